"""The one error type of :mod:`dgmn.data`."""

from dgmn.errors import DgmnError


class DatasetError(DgmnError, ValueError):
    """Bad dataset input. The message names the file (or JSON key) at fault and the problem, e.g.
    ``"…/aachen_000000_000019_gtFine_labelIds.png: label id 57 is not in the Cityscapes table"``.
    """
