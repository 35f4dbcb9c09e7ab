"""`zeroclip classify/search --format html`: the report rendered by a real browser (headless
Chromium, `--dump-dom`), checked against the CLI's own `--format jsonl` output: one card per image,
bar widths equal to the probabilities, the label filter, the confidence filter, sorting, paging,
and a hostile file name that shows as text and runs nothing. Skipped when Chromium is absent,
except under CI=true, where that is a failure (CI installs Debian's `chromium`)."""
import base64
import hashlib
import html.parser
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import cli_util
from cli_util import SOURCE, needs_binary
from cli_util import EXAMPLE_IMAGES as IMAGES
from cli_util import TOY_MODEL as MODEL

LABELS = os.path.join(SOURCE, "examples/labels.txt")

# A name that breaks out of an unescaped HTML context in every way a path can (a path cannot hold
# '/' inside a name, so "</script>" spans a folder and the file): a script element, an element
# with an event handler, quotes, '&', an invalid UTF-8 byte and a newline.
HOSTILE_DIR = b"<script>document.documentElement.dataset.pwned='script'<"
HOSTILE_FILE = (b"script><img src=x onerror=\"document.documentElement.dataset.pwned='img'\">"
                b" 'q' &amp; \xff\nline2.png")


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_cli(*args, check=True):
    """Runs the CLI, bytes out; exit 1 (some files failed) is an expected outcome here."""
    return cli_util.run(*args, check=check, text=False, ok=(0, 1))


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def classes(self):
        return (self.attrs.get("class") or "").split()

    def find_all(self, pred):
        for c in self.children:
            if isinstance(c, Node):
                if pred(c):
                    yield c
                yield from c.find_all(pred)

    def by_class(self, cls):
        return list(self.find_all(lambda n: cls in n.classes()))


class TreeBuilder(html.parser.HTMLParser):
    """The DOM as Chromium serialised it, as a tree of Node."""
    VOID = {"meta", "img", "input", "br", "link", "hr", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", [], None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        node = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse_dom(text):
    builder = TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


@needs_binary
class HtmlReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.chromium = find_chromium()
        if cls.chromium is None:
            if os.environ.get("CI") == "true":
                raise AssertionError("chromium is not installed, but CI=true: CI must run the browser test "
                                     "(scripts/test.sh installs Debian's chromium)")
            raise unittest.SkipTest("chromium is not installed (apt-get install chromium): the HTML report is not "
                                    "checked in a browser")
        cls.tmp = tempfile.mkdtemp(prefix="zeroclip_html_")
        cls.profile = os.path.join(cls.tmp, "chromium-profile")
        folder = os.path.join(cls.tmp, "images")
        shutil.copytree(IMAGES, folder)
        with open(os.path.join(folder, "broken.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n this is not an image")
        hostile_dir = os.path.join(os.fsencode(cls.tmp), HOSTILE_DIR)
        os.mkdir(hostile_dir)
        cls.hostile = os.path.join(hostile_dir, HOSTILE_FILE)
        shutil.copy(os.path.join(folder, sorted(os.listdir(folder))[0]), cls.hostile)
        inputs = [os.fsencode(folder), cls.hostile]
        common = ["classify", "--model", MODEL, "--labels-file", LABELS, "--top-k", "3"]
        # The expected rows: --format jsonl of the folder, then the hostile copy of its first image
        # (JSON output cannot carry a name that is not UTF-8; the page shows U+FFFD for the byte).
        jsonl = run_cli(*common, "--format", "jsonl", folder)
        cls.rows = [json.loads(line) for line in jsonl.stdout.decode("utf-8").splitlines()]
        cls.rows.append(dict(cls.rows[0], path=cls.hostile.decode("utf-8", errors="replace")))
        cls.report = os.path.join(cls.tmp, "report.html")
        proc = run_cli(*common, "--format", "html", "--output", cls.report, *inputs)
        assert proc.returncode == 1, "broken.png must fail and make the exit code 1"
        assert proc.stdout == b"", "with --output nothing goes to stdout"
        with open(cls.report, "rb") as f:
            cls.source = f.read().decode("utf-8")  # the report is valid UTF-8 whatever the names
        cls.dom = cls.render()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def render(cls, fragment="", path=None):
        """The DOM after the page's script ran, at report.html#fragment."""
        url = "file://" + (path or cls.report) + fragment
        proc = subprocess.run([cls.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--user-data-dir=" + cls.profile, "--dump-dom", url],
                              capture_output=True, timeout=120)
        if proc.returncode != 0 or b"<html" not in proc.stdout:
            raise AssertionError(f"chromium failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
        root = parse_dom(proc.stdout.decode("utf-8"))
        html_el = next(root.find_all(lambda n: n.tag == "html"))
        assert html_el.attrs.get("data-rendered") == "true", "the report's script did not run to the end"
        return root

    def cards(self, dom):
        return dom.by_class("card")

    def name_of(self, card):
        return card.by_class("name")[0].text()

    def top1(self, row):
        return row["top"][0]["prob"] if "top" in row else -1

    def test_one_card_per_image_in_input_order(self):
        cards = self.cards(self.dom)
        self.assertEqual(len(cards), len(self.rows))
        self.assertEqual([self.name_of(c) for c in cards], [r["path"] for r in self.rows])

    def test_bars_match_probabilities(self):
        checked = 0
        for card, row in zip(self.cards(self.dom), self.rows):
            if "error" in row:
                continue
            rows = card.by_class("row")
            self.assertEqual([r.find_all(lambda n: n.tag == "a").__next__().text() for r in rows],
                             [t["label"] for t in row["top"]])
            for r, t in zip(rows, row["top"]):
                fill = r.by_class("fill")[0]
                width = float(re.fullmatch(r"width: ([0-9.]+)%;", fill.attrs["style"]).group(1))
                self.assertAlmostEqual(width, 100 * t["prob"], delta=0.006, msg=row["path"])
                checked += 1
        self.assertGreaterEqual(checked, 3 * 16)

    def test_failed_file_is_a_card_with_its_error(self):
        failed = [(c, r) for c, r in zip(self.cards(self.dom), self.rows) if "error" in r]
        self.assertEqual(len(failed), 1)
        card, row = failed[0]
        self.assertIn("failed", card.classes())
        self.assertEqual(card.by_class("error")[0].text(), row["error"])
        self.assertIn("broken.png", row["path"])

    def test_label_filter_hides_other_cards(self):
        chips = {c.attrs["data-label"]: c for c in self.dom.by_class("chip") if "data-label" in c.attrs}
        with open(LABELS) as f:
            self.assertEqual(set(chips), set(f.read().split("\n")) - {""})
        by_label = {}
        for r in self.rows:
            if "top" in r:
                by_label.setdefault(r["top"][0]["label"], []).append(r["path"])
        label, paths = max(by_label.items(), key=lambda kv: len(kv[1]))
        self.assertEqual(chips[label].text(), f"{label} {len(paths)}")
        href = chips[label].attrs["href"]
        self.assertTrue(href.startswith("#label="), href)
        filtered = self.render(href)
        self.assertEqual([self.name_of(c) for c in self.cards(filtered)], paths)
        active = [c for c in filtered.by_class("chip") if c.attrs.get("aria-current") == "true"]
        self.assertEqual([c.attrs.get("data-label") for c in active], [label])
        self.assertLess(len(paths), len(self.rows))

    def test_confidence_filter_and_sort(self):
        below = self.render("#below=0.9")
        want = [r["path"] for r in self.rows if self.top1(r) < 0.9]
        self.assertTrue(0 < len(want) < len(self.rows), "the examples should have some images under 90 %")
        self.assertEqual([self.name_of(c) for c in self.cards(below)], want)
        by_conf = self.render("#sort=conf")
        # The page holds 6 significant digits: sort on those (ties keep the input order, as Python's sort).
        want = [r["path"] for r in sorted(self.rows, key=lambda r: float(f"{self.top1(r):.6g}"))]
        self.assertEqual([self.name_of(c) for c in self.cards(by_conf)], want)
        by_name = self.render("#sort=name")
        self.assertEqual([self.name_of(c) for c in self.cards(by_name)],
                         sorted(r["path"] for r in self.rows))

    def test_hostile_file_name_shows_as_text_and_runs_nothing(self):
        expected = self.hostile.decode("utf-8", errors="replace")
        self.assertIn(expected, [r["path"] for r in self.rows])
        names = [self.name_of(c) for c in self.cards(self.dom)]
        self.assertIn(expected, names)
        html_el = next(self.dom.find_all(lambda n: n.tag == "html"))
        self.assertNotIn("data-pwned", html_el.attrs)
        # Only the report's own three script elements, no element from a name, no event handlers.
        self.assertEqual(len(list(self.dom.find_all(lambda n: n.tag == "script"))), 3)
        self.assertEqual([n for n in self.dom.find_all(lambda n: any(a.startswith("on") for a in n.attrs))], [])
        for img in self.dom.find_all(lambda n: n.tag == "img"):
            self.assertTrue(img.attrs["src"].startswith("data:image/jpeg;base64,"))
            self.assertEqual(img.attrs.get("loading"), "lazy")
        # In the file itself: the raw name never appears, and no "</script" or U+2028 inside the data.
        self.assertNotIn("<img src=x", self.source)
        self.assertEqual(self.source.count("</script>"), 3)
        self.assertNotIn("\u2028", self.source)

    def test_self_contained_and_locked_down(self):
        served = parse_dom(self.source)  # the file as served, before any script runs
        for node in served.find_all(lambda n: True):
            for name in ("src", "href", "action", "srcset", "poster", "data"):
                if name in node.attrs:
                    self.assertRegex(node.attrs[name], r"^(#|data:image/jpeg;base64,)", f"<{node.tag} {name}>")
        self.assertEqual([n.tag for n in served.find_all(lambda n: n.tag in ("link", "iframe", "object", "embed", "img"))], [])
        self.assertNotRegex(self.source, r"https?://")
        csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', self.source).group(1)
        self.assertIn("default-src 'none'", csp)
        self.assertIn("img-src data:", csp)
        script = re.search(r"<script>(.*?)</script>", self.source, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        self.assertIn(f"script-src 'sha256-{digest}'", csp)
        thumbs = re.findall(r'"t":"([A-Za-z0-9+/=]+)"', self.source)
        self.assertEqual(len(thumbs), len(self.rows) - 1)
        for t in thumbs:
            jpeg = base64.b64decode(t)
            self.assertEqual(jpeg[:2], b"\xff\xd8")
            # The SOF0 header holds height and width: the longest side is at most 160.
            sof = jpeg.index(b"\xff\xc0")
            h, w = int.from_bytes(jpeg[sof + 5:sof + 7], "big"), int.from_bytes(jpeg[sof + 7:sof + 9], "big")
            self.assertLessEqual(max(w, h), 160)
            self.assertGreater(min(w, h), 0)

    def test_header(self):
        header = next(self.dom.find_all(lambda n: n.tag == "header")).text()
        self.assertIn(MODEL, header)
        self.assertIn("A photo of a {}.", header)
        stats = self.dom.by_class("stats")[-1].text()
        self.assertIn(f"{len(self.rows)} images: {len(self.rows) - 1} classified, 1 failed", stats)
        self.assertIn("run time", stats)

    def test_paging_and_limit(self):
        folder = os.path.join(self.tmp, "many")
        os.mkdir(folder)
        source = os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0])
        for i in range(230):
            os.symlink(source, os.path.join(folder, f"img{i:04d}.png"))
        report = os.path.join(self.tmp, "many.html")
        run_cli("classify", "--model", MODEL, "--labels-file", LABELS, "--format", "html", "--output", report, folder)
        first = self.render(path=report)
        self.assertEqual([self.name_of(c) for c in self.cards(first)],
                         [os.path.join(folder, f"img{i:04d}.png") for i in range(200)])
        second = self.render("#page=1", path=report)
        self.assertEqual(len(self.cards(second)), 30)
        self.assertIn("page 2 of 2", second.by_class("pager")[0].text())
        limited = os.path.join(self.tmp, "limited.html")
        run_cli("classify", "--model", MODEL, "--labels-file", LABELS, "--format", "html", "--output", limited,
                "--html-limit", "50", folder)
        dom = self.render(path=limited)
        self.assertEqual(len(self.cards(dom)), 50)
        note = next(dom.find_all(lambda n: n.attrs.get("id") == "truncated")).text()
        self.assertIn("first 50 of 230 images", note)
        self.assertIn("--format jsonl", note)
        all_chip = next(c for c in dom.by_class("chip") if "data-label" not in c.attrs)
        self.assertEqual(all_chip.text(), "all 230")

    def test_stdout_without_output_and_usage_errors(self):
        proc = run_cli("classify", "--model", MODEL, "--labels", "red circle,blue square", "--format", "html",
                       os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0]))
        self.assertEqual(proc.returncode, 0)
        self.assertTrue(proc.stdout.startswith(b"<!DOCTYPE html>"))
        self.assertTrue(proc.stdout.rstrip().endswith(b"</html>"))
        # --output takes every format now (streamed through FILE.partial); --resume needs jsonl or csv.
        proc = run_cli("classify", "--model", MODEL, "--labels", "a,b", "--format", "html", "--resume", "--output",
                       os.path.join(self.tmp, "x.html"), IMAGES, check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x.html")))
        # A folder as the output fails before any work, and nothing is left behind.
        target = os.path.join(self.tmp, "a-folder")
        os.mkdir(target)
        proc = run_cli("classify", "--model", MODEL, "--labels", "a,b", "--format", "html", "--output", target,
                       IMAGES, check=False)
        self.assertEqual(proc.returncode, 2)  # a usage error, found before the model is loaded
        self.assertIn(b"a-folder", proc.stderr)
        self.assertEqual(os.listdir(target), [])

    def test_search_report(self):
        index = os.path.join(self.tmp, "index.npy")
        run_cli("embed", "--model", MODEL, IMAGES, "--out", index)
        text = run_cli("search", "--model", MODEL, "--index", index, "--text", "a red circle", "--top-k", "5")
        ranked = [line.split("  ", 1) for line in text.stdout.decode().splitlines()]
        report = os.path.join(self.tmp, "search.html")
        run_cli("search", "--model", MODEL, "--index", index, "--text", "a red circle", "--top-k", "5",
                "--format", "html", "--output", report)
        dom = self.render(path=report)
        self.assertIn("a red circle", dom.by_class("query")[0].text())
        cards = self.cards(dom)
        self.assertEqual([self.name_of(c) for c in cards], [name for _, name in ranked])
        for card, (score, _) in zip(cards, ranked):
            self.assertEqual(card.by_class("pct")[0].text(), score)
        self.assertEqual(len(list(dom.find_all(lambda n: n.tag == "img"))), 5)


if __name__ == "__main__":
    unittest.main()
