import pytest

from clinlake.pipelines.spark import session as spark_session
from clinlake.pipelines.spark.session import JavaNotFoundError, check_java


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java anywhere
    with pytest.raises(JavaNotFoundError, match=r"needs Java 17 or newer.*openjdk-17-jre-headless"):
        check_java()


def test_old_java_is_refused(monkeypatch, tmp_path):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'openjdk version "1.8.0_392"\' >&2\n')
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert spark_session.java_major_version() == 8
    with pytest.raises(JavaNotFoundError, match="found Java 8"):
        check_java()


def test_installed_java_is_accepted():
    assert spark_session.java_major_version() >= 17
