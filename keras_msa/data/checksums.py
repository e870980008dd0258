"""SHA-256 of input files, compared with the hashes the reference framework
publishes for its feature files (no Keras, no TensorFlow).

MMSA (github.com/thuiar/MMSA, README section "2. Datasets", "SHA-256 for
feature files") publishes the SHA-256 of five pickles: MOSI and MOSEI
`Processed/unaligned_50.pkl` and `Processed/aligned_50.pkl`, and CH-SIMS
`Processed/unaligned_39.pkl`. No other version of these files has a
published hash (MMSA v_1.0's README gives only an MD5 of the CH-SIMS raw
download, not of a feature file), so `KNOWN_OTHER` starts empty.

`identify` says what a file is:

- `"official"`: its SHA-256 is one MMSA publishes (whatever the file is called);
- `"other"`: a known other version (`KNOWN_OTHER`);
- `"mismatch"`: it carries the name of a published file (e.g. ends in
  `MOSI/Processed/unaligned_50.pkl`) but not its hash: most often a truncated
  or corrupt download;
- `"unknown"`: neither (a converted or home-made file; nothing to compare).
"""

import hashlib
import os

#: Published by MMSA (README, "SHA-256 for feature files"): name -> SHA-256.
OFFICIAL = {
    "MOSI/Processed/unaligned_50.pkl": "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",
    "MOSI/Processed/aligned_50.pkl": "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",
    "MOSEI/Processed/unaligned_50.pkl": "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",
    "MOSEI/Processed/aligned_50.pkl": "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",
    "SIMS/Processed/unaligned_39.pkl": "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f",
}

#: Other versions with a known hash: SHA-256 -> description. None is
#: published today; an entry needs a public source.
KNOWN_OTHER = {}

SOURCE = "MMSA README (github.com/thuiar/MMSA), section 2 'Datasets'"
DOWNLOAD = ("the links in the MMSA README (github.com/thuiar/MMSA, section 2 'Datasets': "
            "BaiduYun Disk or Google Drive)")


def sha256_file(path, chunk=1 << 22):
    """Hex SHA-256 of the file `path`, read in chunks (feature pickles are GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _published_name(path, official):
    parts = os.path.normpath(os.path.abspath(path)).replace(os.sep, "/").lower().split("/")
    for name in official:
        tail = name.lower().split("/")
        if parts[-len(tail):] == tail:
            return name
    return None


def identify(path, digest=None, official=None, others=None):
    """What the file `path` is, by its SHA-256 (computed unless `digest` is
    given): a dict with `sha256`, `status` (see the module docstring),
    `name` (the published name it matches or carries, else None) and a
    one-line `message` for the user."""
    official = OFFICIAL if official is None else official
    others = KNOWN_OTHER if others is None else others
    digest = (digest or sha256_file(path)).lower()
    by_hash = {v.lower(): k for k, v in official.items()}
    if digest in by_hash:
        name = by_hash[digest]
        return {"sha256": digest, "status": "official", "name": name,
                "message": f"{path}: SHA-256 {digest} is the official {name} ({SOURCE})."}
    others = {k.lower(): v for k, v in others.items()}
    if digest in others:
        return {"sha256": digest, "status": "other", "name": None,
                "message": f"{path}: SHA-256 {digest} is a known other version: {others[digest]}."}
    name = _published_name(path, official)
    if name is not None:
        return {"sha256": digest, "status": "mismatch", "name": name,
                "message": (f"{path} is named like MMSA's {name} but its SHA-256 {digest} is not the "
                            f"published {official[name]}: the file is another version or a damaged "
                            f"download (a truncated or corrupt transfer is common). Re-download it from "
                            f"{DOWNLOAD} and compare with `sha256sum`.")}
    return {"sha256": digest, "status": "unknown", "name": None,
            "message": (f"{path}: SHA-256 {digest} (no published hash to compare it with; "
                        f"compare it with the one of your source).")}
