"""What a Python service does with objdatakey's RocksDB database, through
rocksdict (the PyPI binding). Driven by tests/python_compat.rs.

    rocksdict_compat.py dump  DB ro|rw|secondary   iterate the WHOLE default keyspace
    rocksdict_compat.py write DB NOW               write envelopes the way the Python module does

`dump` decodes every value as the envelope with json.loads, exactly like the
Python module's cleanup loop, and prints one JSON object:
{"column_families": [...], "entries": {name: {"data": <decoded data>, "expires_at": n}}}.
Any failure (open, iteration, a value that is not an envelope) exits 1 with
the reason on stderr.
"""

import json
import sys
import tempfile

from rocksdict import AccessType, Options, Rdict


def open_db(path, access):
    # raw_mode: keys and values are plain bytes (the names' UTF-8, the JSON
    # envelope), as the Python module stores them. Column families are not
    # listed: rocksdict opens every one the database has by itself.
    # (A plain `Rdict(path)` cannot open a database RocksDB 11 wrote at all:
    # rocksdict 0.3.29 loads its OPTIONS file strictly, fails on options its
    # RocksDB 9.8.4 does not know, falls back to its own non-raw comparator
    # and reports "does not match existing comparator".)
    options = Options(raw_mode=True)
    if access == "ro":
        return Rdict(path, options, access_type=AccessType.read_only())
    if access == "rw":
        return Rdict(path, options)
    if access == "secondary":
        return Rdict(path, options, access_type=AccessType.secondary(tempfile.mkdtemp()))
    raise SystemExit(f"unknown access {access!r}")


def dump(path, access):
    cfs = Rdict.list_cf(path)
    db = open_db(path, access)
    entries = {}
    try:
        for key, value in db.items():
            name = key.decode("utf-8")
            envelope = json.loads(value)
            if set(envelope) != {"data", "expires_at"}:
                raise ValueError(f"{name!r}: not an envelope: {envelope!r}")
            if not isinstance(envelope["data"], str):
                raise ValueError(f"{name!r}: data is not JSON text: {envelope!r}")
            if not isinstance(envelope["expires_at"], (int, float)):
                raise ValueError(f"{name!r}: expires_at is not a number: {envelope!r}")
            entries[name] = {
                "data": json.loads(envelope["data"]),
                "expires_at": envelope["expires_at"],
            }
    finally:
        db.close()
    print(json.dumps({"column_families": cfs, "entries": entries}))


def write(path, now):
    db = open_db(path, "rw")
    try:
        put = lambda name, data, expires_at: db.__setitem__(
            name.encode("utf-8"),
            json.dumps({"data": json.dumps(data), "expires_at": expires_at}).encode("utf-8"),
        )
        put("py:year", {"who": "python", "n": [1, 2.5, None]}, now + 365 * 86400.5)
        put("py:never", "forever", -1)
        put("py:minute", 60, now + 60.25)
        put("py:gone", "expired", now - 100.5)
    finally:
        db.close()


def main():
    try:
        cmd, path = sys.argv[1], sys.argv[2]
        if cmd == "dump":
            dump(path, sys.argv[3])
        elif cmd == "write":
            write(path, float(sys.argv[3]))
        else:
            raise SystemExit(f"unknown command {cmd!r}")
    except Exception as e:  # the test prints the reason
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
