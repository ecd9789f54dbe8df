"""A Ray Data datasource that reads source files through `reading.iter_numbered_tables`.

Ray's own CSV reader loses the line number of a row; ours keeps it (and the file) so bad
values found in a distributed parse can be reported at their place in the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ray.data.datasource import FileBasedDatasource
from recrl.pipelines.prepare.reading import SourceFile, iter_numbered_tables, resolve_filesystem


class NumberedFileDatasource(FileBasedDatasource):
    """Reads CSV or parquet `SourceFile`s, one read task per file."""

    def __init__(self, sources: Sequence[SourceFile], file_indices: Sequence[int]) -> None:
        paths = [s.path for s in sources]
        super().__init__(paths, filesystem=resolve_filesystem(paths[0])[0])
        # Ray resolves paths (e.g. strips a scheme), so look sources up by both spellings.
        self._by_path: dict[str, tuple[SourceFile, int]] = {}
        for source, index in zip(sources, file_indices, strict=True):
            self._by_path[source.path] = (source, index)
            self._by_path[resolve_filesystem(source.path)[1]] = (source, index)

    def _lookup(self, path: str) -> tuple[SourceFile, int]:
        if path in self._by_path:
            return self._by_path[path]
        for known, value in self._by_path.items():
            if known.endswith(path) or path.endswith(known):
                return value
        raise KeyError(f"read task got a path that was not requested: {path}")

    def _open_input_source(self, filesystem, path: str, **open_args):
        source, _ = self._lookup(path)
        if source.layout is None:  # parquet needs random access
            return filesystem.open_input_file(path)
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f, path: str) -> Iterator:
        source, index = self._lookup(path)
        yield from iter_numbered_tables(f, source, index)
