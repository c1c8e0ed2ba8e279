"""One root for every error the package raises on purpose."""

from __future__ import annotations

import inspect

import pytest

from aisci_nb import errors
from aisci_nb.contract import params
from aisci_nb.contract.envelope import InvalidEvent
from aisci_nb.contract.idea import InvalidIdea
from aisci_nb.events.spool import SpoolFull
from aisci_nb.storage.store import StorageError

ALL = [c for _, c in inspect.getmembers(errors, inspect.isclass)
       if issubclass(c, Exception) and c.__module__ == errors.__name__]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_is_an_aisci_error(cls: type) -> None:
    assert issubclass(cls, errors.AisciError)


def test_the_modules_raise_the_errors_of_errors_py() -> None:
    assert params.ParameterError is errors.ParameterError
    assert (InvalidEvent, InvalidIdea, SpoolFull, StorageError) == (
        errors.InvalidEvent, errors.InvalidIdea, errors.SpoolFull, errors.StorageError)


def test_old_except_clauses_still_catch_them() -> None:
    assert issubclass(errors.ParameterError, ValueError)
    assert issubclass(errors.StorageError, RuntimeError)
    assert issubclass(errors.MissingInput, LookupError)
    assert len(ALL) >= 12 and errors.AisciError in ALL


def test_the_hierarchy_docstring_names_every_error() -> None:
    for cls in ALL:
        if cls is not errors.AisciError:
            assert cls.__name__ in errors.__doc__, cls.__name__
