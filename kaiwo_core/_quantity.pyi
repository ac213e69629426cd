"""Type stubs for the Cython module kaiwo_core._quantity (documented in kaiwo_core.model.quantity)."""
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Unit = Literal["cpu", "memory", "count"]
Scalar = str | int | float

class QuantityError(ValueError):
    value: Any
    reason: str
    field: str
    def __init__(self, value: Any, reason: str, field: str = "quantity") -> None: ...

def parse_quantity(value: Scalar, unit: Unit, field: str = "quantity") -> int: ...
def parse_quantities(
    values: Iterable[Scalar | None], unit: Unit, field: str = "quantity"
) -> tuple[npt.NDArray[np.int64], list[tuple[int, str]]]: ...
def parse_fraction(value: Scalar, field: str = "kaiwo.ai/gpu-fraction") -> int: ...
def parse_fractions(
    values: Iterable[Scalar | None], field: str = "kaiwo.ai/gpu-fraction"
) -> tuple[npt.NDArray[np.int64], list[tuple[int, str]]]: ...
def parse_positive_int(value: str | int | float, name: str) -> int: ...
def parse_mib(value: Scalar, field: str = "kaiwo.ai/gpu-memory") -> int: ...
def parse_bool(value: str | bool, name: str) -> bool: ...
