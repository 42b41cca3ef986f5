"""Cells: one (codec, image, encoder, decoder) of a job in full, and its history across the job's series."""

from typing import Any

from fastapi import APIRouter, HTTPException

from server import history, queries
from server.dependencies import CellDep, SessionDep
from server.schemas.base import errors
from server.schemas.cells import CellDetail, CellTrendRecord

router = APIRouter(prefix="/api/cells", tags=["cells"], responses=errors(404, 422))


@router.get("/{cell_id}/history", response_model=CellTrendRecord)
def cell_history(cell: CellDep, session: SessionDep) -> dict[str, Any]:
    """The cell across the runs of its job's series: verdicts, trend, since when, what changed."""
    trend = history.cell_trend(session, cell.id)
    if trend is None:
        raise HTTPException(404, f"no cell {cell.id}")
    return trend.as_dict()


@router.get("/{cell_id}", response_model=CellDetail)
def get_cell(cell: CellDep, session: SessionDep) -> dict[str, Any]:
    detail = queries.cell_detail(session, cell.id)
    if detail is None:  # its codec or image row is gone
        raise HTTPException(404, f"no cell {cell.id}")
    return detail
