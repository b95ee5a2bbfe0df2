"""The Python worker's preparation (pipelines/spark/worker.py): zip archives re-read only when they
change, the pipeline's objects frozen out of later garbage collections, once per process."""
from __future__ import annotations

import gc
import os
import sys
import zipfile
import zipimport

import pytest

from clinlake.pipelines.spark import worker

PATCHED = sys.version_info < (3, 12)  # 3.12+ re-reads lazily itself (python/cpython#103200)


@pytest.fixture
def restored(monkeypatch):
    """Whatever the test patches in zipimport and the worker module is undone afterwards."""
    monkeypatch.setattr(zipimport.zipimporter, "invalidate_caches", zipimport.zipimporter.invalidate_caches)
    monkeypatch.setattr(worker, "_PREPARED", False)
    reads: list[str] = []
    read_directory = zipimport._read_directory

    def counting(archive):
        reads.append(archive)
        return read_directory(archive)

    monkeypatch.setattr(zipimport, "_read_directory", counting)
    return reads


def _write_zip(path, modules: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in modules.items():
            archive.writestr(f"{name}.py", source)


def test_an_unchanged_archive_is_not_read_again_a_changed_one_is(tmp_path, restored):
    archive = tmp_path / "deps.zip"
    _write_zip(archive, {"first_module": "VALUE = 1\n"})
    importer = zipimport.zipimporter(str(archive))
    restored.clear()  # the importer's own first read

    assert worker.reread_zips_only_when_changed() is PATCHED
    importer.invalidate_caches()  # first invalidation after the patch: read (nothing known yet)
    importer.invalidate_caches()
    importer.invalidate_caches()
    if PATCHED:  # 3.12+ reads lazily, on the next look-up
        assert len(restored) == 1

    _write_zip(archive, {"first_module": "VALUE = 1\n", "second_module": "VALUE = 2\n"})  # size changes
    importer.invalidate_caches()
    assert importer.find_spec("second_module") is not None  # the new module is seen
    if PATCHED:
        assert len(restored) == 2


def test_a_removed_archive_is_forgotten(tmp_path, restored):
    archive = tmp_path / "gone.zip"
    _write_zip(archive, {"mod": "X = 1\n"})
    importer = zipimport.zipimporter(str(archive))
    worker.reread_zips_only_when_changed()
    importer.invalidate_caches()
    os.remove(archive)
    importer.invalidate_caches()
    assert importer.find_spec("mod") is None


def test_patching_twice_wraps_once(restored):
    first = worker.reread_zips_only_when_changed()
    patched = zipimport.zipimporter.invalidate_caches
    assert worker.reread_zips_only_when_changed() is False
    assert zipimport.zipimporter.invalidate_caches is patched
    assert first is PATCHED


def test_prepare_worker_freezes_once(restored, monkeypatch):
    freezes = []
    freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: (freezes.append(1), freeze())[1])
    try:
        before = gc.get_freeze_count()
        worker.prepare_worker()
        assert gc.get_freeze_count() > before and freezes == [1]
        worker.prepare_worker()  # a later task: nothing is frozen again
        assert freezes == [1]
        assert getattr(zipimport.zipimporter.invalidate_caches, "rereads_only_when_changed", False) is PATCHED
    finally:
        gc.unfreeze()
