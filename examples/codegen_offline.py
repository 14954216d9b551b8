"""Generate typed code in all four languages from examples/codegen/queries.sql, offline (types
from examples/codegen/schema.sql), and print the Go file. No server needed:

    PYTHONPATH=src python3 examples/codegen_offline.py [OUT_DIR]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from etlsync.codegen import generate_files, write_files

HERE = Path(__file__).parent / "codegen"


async def main(out: Path) -> None:
    for lang in ("python", "go", "java", "node"):
        files = await generate_files(HERE / "queries.sql", lang, schema_file=HERE / "schema.sql",
                                     package="example", format_code=lang == "go")
        write_files(files, out / lang)
        print(f"{lang}: {', '.join(sorted(files))}")
    print((out / "go" / "queries.go").read_text())


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/codegen")))
