#!/usr/bin/env python3
"""Small parsing helper for e2e/interop.sh (stdlib only).

Usage:
  cliparse.py json-get FILE KEY[.SUBKEY...]   print a value from a JSON document
                                              (lists/dicts printed as JSON, None as empty)
  cliparse.py json-col FILE COLUMN            print COLUMN of every row of a JSON list
  cliparse.py table-get FILE FIELD            print the value of FIELD from a
                                              "| Property | Value |" table (glance image-show)
  cliparse.py table-col FILE COLUMN           print COLUMN of every row of a table
                                              (glance image-list)
Exit status 3 when the key/field/column is missing.
"""
import json
import sys


def _json_get(doc, path):
    """Dotted lookup; a key that itself contains dots (e.g. "owner_specified.openstack.md5")
    is matched whole first."""
    if isinstance(doc, dict) and path in doc:
        return doc[path]
    head, sep, rest = path.partition(".")
    if sep and isinstance(doc, dict) and head in doc:
        return _json_get(doc[head], rest)
    raise KeyError(path)


def _emit(value):
    if value is None:
        print("")
    elif isinstance(value, (dict, list)):
        print(json.dumps(value, sort_keys=True))
    elif isinstance(value, bool):
        print("true" if value else "false")
    else:
        print(value)


def _table_rows(text):
    """Parse a prettytable; returns (header, rows). Wrapped cells are joined."""
    header, rows = None, []
    for line in text.splitlines():
        line = line.rstrip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        # A continuation line (wrapped value) has an empty first cell.
        if rows and cells and cells[0] == "" and any(cells[1:]):
            rows[-1] = [a + b for a, b in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    return header or [], rows


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    cmd, path, key = argv[1], argv[2], argv[3]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if cmd == "json-get":
            _emit(_json_get(json.loads(text), key))
        elif cmd == "json-col":
            for row in json.loads(text):
                _emit(row[key])
        elif cmd == "table-get":
            _, rows = _table_rows(text)
            for row in rows:
                if len(row) >= 2 and row[0] == key:
                    print(row[1])
                    break
            else:
                raise KeyError(key)
        elif cmd == "table-col":
            header, rows = _table_rows(text)
            idx = header.index(key) if key in header else None
            if idx is None:
                raise KeyError(key)
            for row in rows:
                print(row[idx])
        else:
            sys.stderr.write(__doc__)
            return 2
    except (KeyError, ValueError, TypeError) as e:
        sys.stderr.write("cliparse: %s: missing or unparsable %r (%s)\n" % (cmd, key, e))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
