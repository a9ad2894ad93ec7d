"""Runs SQL statements on the current ClickHouse engine that PyPI's chdb-core embeds.

Reads {"database": name, "statements": [sql, ...]} on stdin, runs the statements in order in
that database of one fresh session (a temporary directory), and writes a JSON list of their
TSV results to stdout. The first
failing statement is reported on stderr and ends the run with status 1.
"""
import json
import sys
import tempfile

from chdb import session


def main() -> int:
    request = json.load(sys.stdin)
    results = []
    with tempfile.TemporaryDirectory() as path:
        s = session.Session(path)
        s.query(f"CREATE DATABASE IF NOT EXISTS `{request['database']}`")
        s.query(f"USE `{request['database']}`")
        statements = request["statements"]
        for sql in statements:
            try:
                results.append(str(s.query(sql, "TSV")))
            except Exception as e:  # chdb raises its own error type per failed statement
                print(f"statement failed: {sql}\n{e}", file=sys.stderr)
                return 1
        s.close()
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
