"""`glm-proxy --help` and README.md's flag table say the same: the same flags, the same defaults,
the same ranges and choices."""

import os
import re
import unittest

from harness import run_proxy

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")

def help_flags():
    """{flag: (default, accepted)} from --help; accepted is the text after the type's colon.

    A flag's line looks like "  --port UINT:[0, 65535]=8000 (Env:GLM_PROXY_PORT)", the
    description following after two or more spaces or on the next line."""
    code, out = run_proxy(["--help"])
    assert code == 0, out
    flags = {}
    for line in out.splitlines():
        if not re.match(r"^  (?:-h,)?--[a-z]", line):
            continue
        head = re.split(r"\s{2,}", line.strip())[0]
        head = re.sub(r"\s*\(Env:[^)]*\)$", "", head)
        flag, _, spec = head.partition(" ")
        flag = flag.removeprefix("-h,")
        spec = spec.removesuffix(" ...")  # a list
        kind, _, default = spec.partition("=")
        if default.startswith("[") and default.endswith("]"):
            default = default[1:-1]
        accepted = kind.split(":", 1)[1] if ":" in kind else ""
        flags[flag] = (default, accepted)
    return flags


def readme_flags():
    """{flag: (default, accepted)} from README.md's table under "## Running it"."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Running it"):]
    section = section[:section.index("\n## ", 1)]
    table = section[section.index("| flag | default | accepted | meaning |"):]
    flags = {}
    for row in table.splitlines()[2:]:
        if not row.startswith("|"):
            break
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = re.findall(r"`(--[a-z-]+)`", cells[0])
        assert len(names) == 1, f"one flag per row: {row}"
        flags[names[0]] = (cells[1], cells[2])
    return flags


class FlagsDocTests(unittest.TestCase):
    def test_help_and_readme_list_the_same_flags(self):
        helped = set(help_flags()) - {"--help"}
        documented = set(readme_flags())
        self.assertGreater(len(helped), 25, "the --help parser found too few flags")
        self.assertEqual(sorted(helped - documented), [], "in --help but not in README.md")
        self.assertEqual(sorted(documented - helped), [], "in README.md but not in --help")

    def test_defaults_agree(self):
        helped, documented = help_flags(), readme_flags()
        for flag, (default, _) in helped.items():
            if flag not in documented or flag == "--help":
                continue
            with self.subTest(flag=flag):
                want = documented[flag][0]
                # A switch is "off" in the README and has no default in --help; a choice whose
                # value is "off" (--prefill-fallback) keeps it.
                if want == "off" and default == "":
                    want = ""
                self.assertEqual(default, want)

    def test_ranges_and_choices_agree(self):
        helped, documented = help_flags(), readme_flags()
        for flag, (_, accepted) in helped.items():
            if not accepted:
                continue
            with self.subTest(flag=flag):
                if accepted.startswith("{"):  # choices: {DEBUG,INFO,...}
                    want = [c.strip() for c in documented[flag][1].split(",")]
                    self.assertEqual(accepted[1:-1].split(","), want)
                else:
                    self.assertEqual(accepted, documented[flag][1])


if __name__ == "__main__":
    unittest.main()
