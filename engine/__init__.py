"""Eddy's app-facing API: everything an app's schema and functions import.

    from engine import define_schema, define_table, v, query, mutation, AppError
"""

from engine.errors import AppError, EddyError, ErrorCode
from engine.functions import (action, internal_action, internal_mutation, internal_query,
                              mutation, query)
from engine.keys import UNDEFINED
from engine.schema import define_schema, define_table
from engine.validators import pagination_opts, v

__all__ = [
    "AppError", "EddyError", "ErrorCode", "UNDEFINED",
    "action", "define_schema", "define_table", "internal_action", "internal_mutation",
    "internal_query", "mutation", "pagination_opts", "query", "v",
]
