"""dgmn._imports.import_target: the one resolver of ``"package.module:Name"`` strings."""

from __future__ import annotations

import re

import pytest

from dgmn._imports import import_target
from dgmn.models.insertion import CONV_REPLACEMENTS
from dgmn.nn.deform_conv import ModulatedDeformConv2d


def test_resolves_a_registry_entry():
    assert import_target(CONV_REPLACEMENTS["deformable"]) is ModulatedDeformConv2d


@pytest.mark.parametrize("bad", ["dgmn.nn.deform_conv", "dgmn.nn.deform_conv:", ":Name"])
def test_a_malformed_string_names_itself(bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        import_target(bad)


def test_a_missing_name_is_pythons_error():
    with pytest.raises(AttributeError):
        import_target("dgmn.nn.deform_conv:NoSuchClass")
