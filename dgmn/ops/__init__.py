"""Functional ops (no state): the dynamic message-passing op and its building blocks."""

from dgmn.ops.deform import deform_conv2d
from dgmn.ops.message_passing import dynamic_message_passing, message_weights
from dgmn.ops.reference import aggregate_reference, bilinear_neighbours
from dgmn.ops.sampling import check_kernel_size, check_rates, neighbour_offsets

__all__ = [
    "aggregate_reference",
    "bilinear_neighbours",
    "check_kernel_size",
    "check_rates",
    "deform_conv2d",
    "dynamic_message_passing",
    "message_weights",
    "neighbour_offsets",
]
