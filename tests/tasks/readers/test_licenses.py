"""Licences from whole licence texts and SPDX expressions, never from a phrase."""

from __future__ import annotations

from pathlib import Path

import pytest
from lmforge.infra.make_sample import MIT
from lmforge.tasks.readers.licenses import (
    UNKNOWN,
    License,
    LicenseIndex,
    file_license,
    header_license,
    license_text,
    spdx_identifier,
)

COMMON = Path("/usr/share/common-licenses")  # Debian's base-files: the full licence texts
APACHE_HEADER = '''# Copyright 2020 The Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

import os
'''


@pytest.mark.parametrize(("expression", "allowed"), [
    ("MIT", True), ("GPL-3.0-only", False), ("(MIT OR GPL-3.0-only)", True),
    ("MIT AND GPL-3.0-only", False), ("Apache-2.0 WITH LLVM-exception", True),
    ("(Apache-2.0 OR MIT) AND BSD-3-Clause", True), ("unknown", False), ("(MIT", False),
])
def test_expressions(expression: str, allowed: bool) -> None:
    assert License(expression, "test").allowed(["MIT", "Apache-2.0", "BSD-3-Clause"]) is allowed


def test_spdx_identifier_line() -> None:
    found = spdx_identifier("// SPDX-License-Identifier: (Apache-2.0 OR MIT) */\nint x;")
    assert found is not None and found.expression == "(Apache-2.0 OR MIT)"
    assert spdx_identifier("x = 1\n") is None


def test_licence_file_matched_as_a_whole_text() -> None:
    assert license_text("LICENSE", MIT).expression == "MIT"
    assert license_text("LICENSE", "All rights reserved.").expression == "unknown"


def test_a_mention_is_not_a_licence() -> None:
    # CPython's licence history says "GPL-compatible" many times; a sentence names the MIT
    history = ("Python releases have been GPL-compatible; the table below summarizes the "
               "releases. This project is released under the MIT license, see LICENSE.")
    assert header_license(history) is None
    assert license_text("LICENSE", history).expression == "unknown"


def test_header_notice() -> None:
    found = header_license(APACHE_HEADER)
    assert found is not None and found.expression == "Apache-2.0"
    assert found.evidence.startswith("file header: Apache-2.0")


def test_nearest_licence_file_wins() -> None:
    index = LicenseIndex({"LICENSE": MIT, "vendor/pkg/COPYING": "Custom terms only.",
                          "docs/copyright.rst": "Copyright notices of the authors."})
    assert file_license("x = 1", "src/a.py", index).expression == "MIT"
    # a vendored package's own licence file decides, even one we cannot identify
    assert file_license("x = 1", "vendor/pkg/a.py", index).expression == "unknown"
    # a page about copyright is not a licence file: the project's licence still applies
    assert file_license("x = 1", "docs/page.py", index).expression == "MIT"
    # the file's own SPDX line and header come first
    assert file_license("# SPDX-License-Identifier: BSD-3-Clause\n", "src/b.py",
                        index).expression == "BSD-3-Clause"
    assert file_license(APACHE_HEADER, "src/c.py", index).expression == "Apache-2.0"
    assert file_license("x = 1", "a.py", None) is UNKNOWN


@pytest.mark.skipif(not (COMMON / "GPL-3").exists(), reason="no Debian licence texts here")
def test_real_licence_texts() -> None:
    assert license_text("GPL-3", (COMMON / "GPL-3").read_text()).primary.startswith("GPL-3.0")
    assert license_text("Apache-2.0", (COMMON / "Apache-2.0").read_text()).primary == \
        "Apache-2.0"
    assert license_text("MPL-2.0", (COMMON / "MPL-2.0").read_text()).primary == "MPL-2.0"
