"""The base of the library's own errors.

Every error that means "this input (a file, a config value) cannot be used" derives from
:class:`DgmnError`, so an application can report all of them the same way (the pipeline's
stages print one ``error: …`` line and exit with status 2) without knowing each subclass.
"""


class DgmnError(Exception):
    """Bad input to the library. The message names the file, key or value at fault."""
