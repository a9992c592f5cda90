"""benchmarks/json_stdout.py: a benchmark's standard output holds its JSON and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / 'benchmarks'

SCRIPT = f'''
import json, logging, os, sys
sys.path.insert(0, {str(BENCHMARKS)!r})
from json_stdout import json_only_stdout
logging.basicConfig(stream=sys.stdout, level=logging.INFO)  # a logger bound to stdout, as NNI's is
print('before')
with json_only_stdout() as stdout:
    print('a progress bar')
    logging.info('a log line')
    os.write(1, b'from C\\n')
    stdout.write(json.dumps({{"runs": [1, 2]}}) + '\\n')
print('after')
'''


def test_only_the_json_reaches_stdout_inside_the_block():
    done = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    lines = done.stdout.splitlines()
    assert lines[0] == 'before' and lines[-1] == 'after'
    assert json.loads(lines[1]) == {'runs': [1, 2]} and len(lines) == 3
    for noise in ('a progress bar', 'a log line', 'from C'):
        assert noise in done.stderr and noise not in done.stdout
