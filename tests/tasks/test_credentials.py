"""Secrets referenced from the configuration are resolved on the worker, never kept in it."""

from __future__ import annotations

import pytest
from lmforge.tasks.credentials import is_reference, resolve_secret
from lmforge.tasks.pii import PiiConfig, PiiScrubber
from lmforge.tasks.schema import Document


def _hashed(salt: str) -> str:
    doc = Document.new("books", "b.txt", "Write to jane.doe@example.com today.")
    return PiiScrubber(PiiConfig(ner_model=None, policy="hash", hash_salt=salt)).rewrite(doc).text


def test_environment_reference(monkeypatch) -> None:
    monkeypatch.setenv("LMFORGE_TEST_SALT", "pepper")
    assert resolve_secret("${env:LMFORGE_TEST_SALT}", "pii.hash_salt") == "pepper"
    assert resolve_secret("plain value", "k") == "plain value"
    assert is_reference("${prefect-secret:pii-salt}") and not is_reference("$HOME")
    # the scrubber hashes with the secret, not with the reference text
    assert _hashed("${env:LMFORGE_TEST_SALT}") == _hashed("pepper") != _hashed("lmforge")
    monkeypatch.delenv("LMFORGE_TEST_SALT")
    with pytest.raises(ValueError, match=r"pii\.hash_salt: environment variable "
                                         r"LMFORGE_TEST_SALT is not set"):
        _hashed("${env:LMFORGE_TEST_SALT}")


def test_prefect_secret_block(services_up) -> None:
    from lmforge.flows.launch import platform
    from prefect.blocks.system import Secret

    with platform():
        Secret(value="block-pepper").save("lmforge-test-salt", overwrite=True)
        assert resolve_secret("${prefect-secret:lmforge-test-salt}", "k") == "block-pepper"
        assert _hashed("${prefect-secret:lmforge-test-salt}") == _hashed("block-pepper")
        with pytest.raises(ValueError, match="no Prefect Secret block named 'missing-salt'"):
            resolve_secret("${prefect-secret:missing-salt}", "pii.hash_salt")
