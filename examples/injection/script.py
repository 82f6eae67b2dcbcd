"""A one-off script that reuses the application's components: only the pool starts.

python examples/injection/script.py add "buy milk"
python examples/injection/script.py list
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from app import DbPool, build_container


async def main(argv: list[str]) -> int:
    container = build_container()
    async with container.started(DbPool) as db:  # starts DbPool, nothing else
        if argv[:1] == ["add"] and len(argv) == 2:
            await db.execute("insert into notes (text) values (?)", argv[1])
            print(f"added: {argv[1]}")
        elif argv == ["list"]:
            for (text,) in await db.execute("select text from notes order by rowid"):
                print(f"- {text}")
        else:
            print("usage: script.py add TEXT | list", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
