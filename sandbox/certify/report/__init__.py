"""Reports of a certify run: ``checks.json`` (the official conformance suite's shape), JUnit XML, HTML."""
