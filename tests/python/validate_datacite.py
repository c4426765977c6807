"""Validate a release's datacite.json against the DataCite 4.5 JSON schema that the maintained
`datacite` Python package ships (datacite.schema45).

usage: validate_datacite.py DATACITE.json
Prints one JSON line {"ok": bool, "errors": [...]} and exits 1 when the document is not valid.
"""
import json
import os
import sys

import datacite
import datacite.schema45 as schema45
from jsonschema import Draft7Validator

doc = json.load(open(sys.argv[1]))
path = os.path.join(os.path.dirname(datacite.__file__), "schemas", "datacite-v4.5.json")
errors = [f"{list(e.path)}: {e.message}" for e in Draft7Validator(json.load(open(path))).iter_errors(doc)]
ok = schema45.validate(doc) and not errors
print(json.dumps({"ok": ok, "errors": errors, "datacite": getattr(datacite, "__version__", "?")}))
sys.exit(0 if ok else 1)
