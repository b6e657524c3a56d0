"""imgtag: tag and describe large folders of images with vision-language models.

The Python API (docs/python-api.md) is imported on first use of one of its names, so `import imgtag` and
`imgtag --help` load none of the pipeline (bench/startup.py, tests/test_cli_help.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from imgtag.version import __version__

if TYPE_CHECKING:  # what the names below are, for type checkers and editors
    from imgtag.api import Estimate as Estimate
    from imgtag.api import Exported as Exported
    from imgtag.api import ModelCost as ModelCost
    from imgtag.api import Result as Result
    from imgtag.api import RunResult as RunResult
    from imgtag.api import Stopper as Stopper
    from imgtag.api import adescribe as adescribe
    from imgtag.api import atag as atag
    from imgtag.api import describe as describe
    from imgtag.api import estimate as estimate
    from imgtag.api import export_files as export_files
    from imgtag.api import folder_status as folder_status
    from imgtag.api import open_review as open_review
    from imgtag.api import results as results
    from imgtag.api import retry_failed as retry_failed
    from imgtag.api import tag as tag
    from imgtag.config.errors import BudgetError as BudgetError
    from imgtag.config.errors import ConfigurationError as ConfigurationError
    from imgtag.config.errors import ImgtagError as ImgtagError
    from imgtag.config.errors import ProviderError as ProviderError
    from imgtag.config.errors import StoreInUseError as StoreInUseError
    from imgtag.config.errors import UsageError as UsageError
    from imgtag.review_session import ReviewChange as ReviewChange
    from imgtag.review_session import ReviewItem as ReviewItem
    from imgtag.review_session import ReviewPage as ReviewPage
    from imgtag.review_session import ReviewRefused as ReviewRefused
    from imgtag.review_session import ReviewSession as ReviewSession
    from imgtag.review_session import ReviewVersion as ReviewVersion
    from imgtag.review_session import TagCount as TagCount

# public name -> the module that defines it
_LAZY: dict[str, str] = {
    "tag": "imgtag.api",
    "atag": "imgtag.api",
    "results": "imgtag.api",
    "estimate": "imgtag.api",
    "describe": "imgtag.api",
    "adescribe": "imgtag.api",
    "folder_status": "imgtag.api",
    "export_files": "imgtag.api",
    "retry_failed": "imgtag.api",
    "open_review": "imgtag.api",
    "Exported": "imgtag.api",
    "RunResult": "imgtag.api",
    "Stopper": "imgtag.api",
    "Result": "imgtag.api",
    "Estimate": "imgtag.api",
    "ModelCost": "imgtag.api",
    "ImgtagError": "imgtag.config.errors",
    "ConfigurationError": "imgtag.config.errors",
    "UsageError": "imgtag.config.errors",
    "ProviderError": "imgtag.config.errors",
    "BudgetError": "imgtag.config.errors",
    "StoreInUseError": "imgtag.config.errors",
    "ReviewSession": "imgtag.review_session",
    "ReviewItem": "imgtag.review_session",
    "ReviewPage": "imgtag.review_session",
    "ReviewChange": "imgtag.review_session",
    "ReviewVersion": "imgtag.review_session",
    "TagCount": "imgtag.review_session",
    "ReviewRefused": "imgtag.review_session",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'imgtag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
