"""The README stays true: its library example is examples/zero_shot_example.cpp verbatim (which
the build compiles and ctest runs), and its two set-up commands exist."""
import os
import re
import unittest

SOURCE = os.environ.get("ZEROCLIP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))


class ReadmeTest(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(SOURCE, "README.md")) as f:
            self.readme = f.read()

    def test_library_example_is_the_compiled_file(self):
        with open(os.path.join(SOURCE, "examples/zero_shot_example.cpp")) as f:
            example = f.read()
        blocks = re.findall(r"```cpp\n(.*?)```", self.readme, re.S)
        self.assertIn(example, blocks, "README's C++ example differs from examples/zero_shot_example.cpp")

    def test_setup_commands_exist(self):
        for script in ("scripts/classify_examples.sh", "scripts/test.sh"):
            self.assertIn(f"bash {script}", self.readme)
            self.assertTrue(os.path.exists(os.path.join(SOURCE, script)), script)
        with open(os.path.join(SOURCE, ".ci/run")) as f:
            self.assertIn("bash scripts/test.sh", f.read())


if __name__ == "__main__":
    unittest.main()
