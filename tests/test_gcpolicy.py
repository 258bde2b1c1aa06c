"""The one GC policy: a thaw lasts until the next adoption, whoever else settles."""

import gc

from collectors.gcpolicy import THAW_SECONDS, FrozenGarbage, settle


def test_a_thaw_is_not_undone_by_settling_after_it() -> None:
    frozen = FrozenGarbage()
    try:
        frozen.adopted()
        settle()
        assert gc.get_freeze_count() > 0  # between thaws both freeze
        frozen.thawed_at -= THAW_SECONDS  # time for a thaw
        frozen.adopted()
        settle()  # a view computed after the thawing refresh
        assert gc.get_freeze_count() == 0
        frozen.adopted()  # the next refresh freezes again
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
