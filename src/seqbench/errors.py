"""User-facing errors: one line that says what is wrong and how to fix it."""


class SeqbenchError(ValueError):
    """Bad input from the user (unknown name, wrong shape, impossible budget, bad file...).

    The CLI prints the message on one line and exits with code 2; Python callers can catch it
    (it is a ValueError).
    """
