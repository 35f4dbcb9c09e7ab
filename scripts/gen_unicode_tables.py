#!/usr/bin/python3
"""Generate include/zeroclip/detail/text/unicode_tables.hpp for zeroclip's CLIP tokenizer.

Run with Debian's /usr/bin/python3 (no third-party modules):

    /usr/bin/python3 scripts/gen_unicode_tables.py > include/zeroclip/detail/text/unicode_tables.hpp

Everything is taken from the running Python so that the C++ tokenizer reproduces *that* Python's
str.lower(), str.isspace(), str.strip() and html.unescape() exactly:
  - general categories (L*, N*) and case mappings from `unicodedata` (its unidata_version is
    written into the header);
  - `Cased` / `Case_Ignorable` (used by str.lower()'s final-sigma rule) are derived from the
    categories plus the Word_Break list below, and then *checked* against str.lower() itself;
  - the HTML5 named character references and the numeric-reference fix-ups from `html`.
The output is deterministic: a re-run with the same Python gives a byte-identical file.
"""
import html
import html.entities
import sys
import unicodedata

MAX_CP = 0x110000

# Unicode White_Space (PropList.txt, unchanged since Unicode 6.3). This is what the `regex`
# module's \s matches in str patterns; str.isspace() additionally accepts U+001C..U+001F.
WHITE_SPACE = [0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
               0x2028, 0x2029, 0x202F, 0x205F, 0x3000]

# Word_Break = MidLetter | MidNumLet | Single_Quote (WordBreakProperty.txt); part of the
# Case_Ignorable derivation. Verified below against str.lower()'s behaviour.
WORD_BREAK_MID = [0x27, 0x2E, 0x3A, 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024, 0x2027,
                  0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A]


def ranges(pred):
    """Maximal [lo, hi] runs of code points satisfying pred."""
    out, start = [], None
    for cp in range(MAX_CP):
        if pred(cp):
            if start is None:
                start = cp
        elif start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, MAX_CP - 1))
    return out


def cat(cp):
    return unicodedata.category(chr(cp))


def is_cased(cp):
    c = chr(cp)
    return c.islower() or c.isupper() or cat(cp) == 'Lt'


def is_case_ignorable(cp):
    return cat(cp) in ('Mn', 'Me', 'Cf', 'Lm', 'Sk') or cp in WORD_BREAK_MID


def probe_case_ignorable(cp):
    """Case_Ignorable as str.lower() sees it (final-sigma context), for checking the derivation."""
    c = chr(cp)
    if is_cased(cp):
        # Backwards scan from the sigma skips c only if it is case-ignorable; then nothing cased
        # precedes, so the sigma is not final.
        return (c + '\u03a3').lower()[-1] == '\u03c3'
    # Forward scan: an ignorable c is skipped and the cased 'B' after it makes the sigma non-final.
    low = ('A\u03a3' + c + 'B').lower()
    return low[1] == '\u03c3'


def main():
    white = set(WHITE_SPACE)
    isspace = {cp for cp in range(MAX_CP) if chr(cp).isspace()}
    assert white <= isspace and isspace - white == {0x1C, 0x1D, 0x1E, 0x1F}, sorted(isspace - white)

    # Character classes of CLIP's split pattern ([\p{L}]+ | [\p{N}] | [^\s\p{L}\p{N}]+, IGNORECASE).
    LETTER, NUMBER, SPACE, UNMATCHED = 1, 2, 3, 4

    def base_class(cp):
        if cp in white:
            return SPACE
        k = cat(cp)[0]
        return LETTER if k == 'L' else NUMBER if k == 'N' else 0

    def clip_class(cp):
        b = base_class(cp)
        if b:
            return b
        # With IGNORECASE the `regex` module tests a set against every case variant of the
        # character, so a non-letter whose case partner is a letter (U+0345 COMBINING GREEK
        # YPOGEGRAMMENI ~ U+0399) matches neither [\p{L}] nor [^\s\p{L}\p{N}]: it is skipped.
        c = chr(cp)
        for v in (c.upper(), c.lower(), c.title(), c.casefold()):
            if len(v) == 1 and v != c and base_class(ord(v)):
                return UNMATCHED
        return 0

    classes = [clip_class(cp) for cp in range(MAX_CP)]
    class_runs = []
    for cp, k in enumerate(classes):
        if k and class_runs and class_runs[-1][2] == k and class_runs[-1][1] == cp - 1:
            class_runs[-1][1] = cp
        elif k:
            class_runs.append([cp, cp, k])
    unmatched = [hex(cp) for cp, k in enumerate(classes) if k == UNMATCHED]
    print('ignore-case unmatched code points:', unmatched, file=sys.stderr)

    # str.lower(): single code point results as (lo, hi, step, delta) runs; longer ones listed.
    singles, multi = [], []
    for cp in range(MAX_CP):
        if cp == 0x3A3:
            continue  # capital sigma: context dependent (final sigma), handled in code
        low = chr(cp).lower()
        if low == chr(cp):
            continue
        if len(low) == 1:
            singles.append((cp, ord(low) - cp))
        else:
            multi.append((cp, [ord(x) for x in low]))
    assert chr(0x3A3).lower() == '\u03c3' and ('A\u03a3').lower() == 'a\u03c2'
    lower_runs = []  # [lo, hi, step, delta]
    for cp, d in singles:
        if lower_runs:
            r = lower_runs[-1]
            if r[3] == d:
                if r[0] == r[1] and cp - r[1] in (1, 2):
                    r[1], r[2] = cp, cp - r[0]
                    continue
                if r[0] != r[1] and cp - r[1] == r[2]:
                    r[1] = cp
                    continue
        lower_runs.append([cp, cp, 1, d])
    assert all(len(m) <= 3 for _, m in multi)
    # Lookups binary-search on `lo`, so the spans of the runs must not interleave.
    assert all(a[1] < b[0] for a, b in zip(lower_runs, lower_runs[1:]))

    cased = ranges(is_cased)
    ignorable = ranges(is_case_ignorable)
    bad = [hex(cp) for cp in range(MAX_CP) if is_case_ignorable(cp) != probe_case_ignorable(cp)]
    assert not bad, 'Case_Ignorable derivation disagrees with str.lower(): %s' % bad[:20]

    entities = sorted(html.entities.html5.items())
    assert all(k.isascii() and 1 <= len(v) <= 2 for k, v in entities)
    invalid_refs = sorted(html._invalid_charrefs.items())
    assert all(len(v) == 1 for _, v in invalid_refs)
    invalid_cps = sorted(html._invalid_codepoints)

    w = sys.stdout.write
    ver = unicodedata.unidata_version
    pyver = '%d.%d.%d' % sys.version_info[:3]
    w('//! Unicode and HTML tables for zeroclip\'s CLIP tokenizer: character classes, str.lower(),\n')
    w('//! str.isspace(), Cased/Case_Ignorable and html.unescape() data, as Python %s with\n' % pyver)
    w('//! Unicode %s has them. GENERATED by scripts/gen_unicode_tables.py: do not edit by hand.\n' % ver)
    w('#pragma once\n\n#include <cstdint>\n\n')
    w('namespace zeroclip::detail::tables {\n\n')
    w('/// Version of the Unicode Character Database these tables come from.\n')
    w('inline constexpr const char unicode_version[] = "%s";\n' % ver)
    w('/// Python version whose unicodedata and html modules generated the tables.\n')
    w('inline constexpr const char python_version[] = "%s";\n\n' % pyver)
    w('struct cp_range {\n    char32_t lo, hi;\n};\n\n')
    w('/// Class of a code point in CLIP\'s split pattern; code points in no range are "other".\n')
    w('enum clip_class : std::uint8_t { other = 0, letter = %d, number = %d, space = %d, unmatched = %d };\n\n'
      % (LETTER, NUMBER, SPACE, UNMATCHED))
    w('struct class_range {\n    char32_t lo, hi;\n    std::uint8_t cls;\n};\n\n')

    def emit_ranges(name, comment, rs, fmt):
        w('// %s (%d entries)\n' % (comment, len(rs)))
        w('inline constexpr %s[] = {\n' % name)
        line = '   '
        for r in rs:
            item = ' ' + fmt(r) + ','
            if len(line) + len(item) > 100:
                w(line + '\n')
                line = '   '
            line += item
        w(line + '\n};\n\n')

    emit_ranges('class_range clip_classes', 'letter = \\p{L}, number = \\p{N}, space = regex \\s (White_Space), '
                'unmatched = skipped under IGNORECASE', class_runs,
                lambda r: '{0x%X, 0x%X, %d}' % tuple(r))
    emit_ranges('cp_range py_space', 'str.isspace(): what str.strip() removes', ranges(lambda c: c in isspace),
                lambda r: '{0x%X, 0x%X}' % r)
    w('struct lower_run {\n    char32_t lo, hi;\n    std::uint8_t step;\n    std::int32_t delta;\n};\n\n')
    emit_ranges('lower_run lower_runs', 'str.lower() of one code point to one code point: lo..hi every '
                '`step`, add `delta`', lower_runs, lambda r: '{0x%X, 0x%X, %d, %d}' % tuple(r))
    w('struct lower_multi {\n    char32_t cp;\n    char32_t out[3];\n};\n\n')
    emit_ranges('lower_multi lower_multis', 'str.lower() results longer than one code point (0-terminated)',
                multi, lambda m: '{0x%X, {%s}}' % (m[0], ', '.join('0x%X' % x for x in (m[1] + [0, 0])[:3])))
    emit_ranges('cp_range cased', 'Cased = Lowercase | Uppercase | Lt', cased, lambda r: '{0x%X, 0x%X}' % r)
    emit_ranges('cp_range case_ignorable', 'Case_Ignorable (checked against str.lower())', ignorable,
                lambda r: '{0x%X, 0x%X}' % r)
    w('struct html_entity {\n    const char* name;\n    char32_t value[2];  // second is 0 when unused\n};\n\n')
    emit_ranges('html_entity html5_entities', 'html.entities.html5, sorted by name (byte order)', entities,
                lambda e: '{"%s", {0x%X, 0x%X}}' % (e[0], ord(e[1][0]), ord(e[1][1]) if len(e[1]) > 1 else 0))
    w('struct charref_fix {\n    char32_t from, to;\n};\n\n')
    emit_ranges('charref_fix html_invalid_charrefs', 'html._invalid_charrefs: numeric references replaced '
                '(Windows-1252 remap, NUL, CR)', invalid_refs, lambda e: '{0x%X, 0x%X}' % (e[0], ord(e[1])))
    emit_ranges('char32_t html_invalid_codepoints', 'html._invalid_codepoints: numeric references dropped',
                invalid_cps, lambda c: '0x%X' % c)
    w('}  // namespace zeroclip::detail::tables\n')


if __name__ == '__main__':
    main()
