"""The config hash: what groups runs into one configuration (a leaderboard row, a sweep's "already
finished"). Everything that defines the experiment enters it, except the seed and the fold (so seeds and
folds group together), the log section and the device; a plugin's revision above 0 enters it too
(`harness.plugins.LookupRecord`).
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel

# Data settings added later, left out at their default so older hashes still match. data.fold is always left
# out: the folds of one configuration are runs of it, like its seeds (data.folds stays in: 5-fold is another
# experiment than a val_fraction split).
_LATER_DATA_SETTINGS = {"folds": None, "groups": "file"}
_LATER_TRAIN_SETTINGS = {
    "sync_bn": False,
    "schedule": "plateau",
    "onecycle_pct": 0.25,
    "val_tta": "none",
    "ema": False,
    "ema_decay": 0.999,
}


def config_hash(resolved: BaseModel, revisions: dict[str, int] | None = None) -> str:
    """Hash of a `harness.config.RunConfig`: everything that defines the experiment except the seed (so
    seeds group together) and the log section (logging does not change a run), plus the revisions above 0
    of the plugins it uses."""
    payload = resolved.model_dump(mode="json", exclude={"seed", "log"})
    if revisions:  # absent at revision 0, so the hashes of plugins never revised stay as they were
        payload["revisions"] = revisions
    payload["train"].pop("device", None)
    payload["data"].pop("fold", None)
    for key, legacy in _LATER_DATA_SETTINGS.items():
        if payload["data"].get(key) == legacy:
            payload["data"].pop(key, None)  # where a run happens does not change what it is
    # Settings added later are left out while they keep the behaviour older versions had, so the hashes
    # of runs recorded before them still match.
    for key, legacy in _LATER_TRAIN_SETTINGS.items():
        if payload["train"].get(key) == legacy:
            payload["train"].pop(key, None)
    if payload["train"].get("eval_batch_size") == "auto":  # batching never changes the metric; 256 was
        payload["train"]["eval_batch_size"] = 256  # the fixed default before "auto" and stays in old hashes
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
