// `--format html` of `zeroclip classify` and `zeroclip search`: one self-contained HTML file to
// look at the results in a browser. Thumbnails are JPEG data URIs, CSS and the script are inline,
// and a Content-Security-Policy forbids every remote load (the script is allowed by its SHA-256
// only, so nothing injected could run even if escaping failed). The writer streams: begin(), then
// add() once per image as results arrive, then finish(); the cards are a JSON array the script
// pages through (200 per page), so 10,000 images stay responsive.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>
#include <zeroclip/detail/text/utf8.hpp>
#include <zeroclip/image.hpp>
#include <zeroclip/io/file.hpp>

#include "sha256.hpp"

namespace zeroclip_cli {

namespace report_detail {

/// `s` with every ill-formed UTF-8 sequence replaced by U+FFFD (a file name may hold any bytes).
inline std::string valid_utf8(std::string_view s) {
    return zeroclip::detail::encode_utf8(zeroclip::detail::decode_utf8_replace(s));
}

/// Text for HTML content and quoted attribute values.
inline std::string html_escape(std::string_view raw) {
    std::string out;
    for (char c : valid_utf8(raw)) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

/// A JSON string literal safe inside <script>: no '<', '>' or '&' (so no "</script>" or "<!--"),
/// no U+2028/U+2029, control characters escaped, invalid UTF-8 replaced.
inline std::string script_json_string(std::string_view raw) {
    const std::string s = valid_utf8(raw);
    std::string out = "\"";
    char buf[8];
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
            (static_cast<unsigned char>(s[i + 2]) == 0xA8 || static_cast<unsigned char>(s[i + 2]) == 0xA9)) {
            out += static_cast<unsigned char>(s[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";
            i += 2;
        } else if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7F) {
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

/// A URL fragment value, as JavaScript's encodeURIComponent writes it.
inline std::string url_component(std::string_view raw) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (char ch : valid_utf8(raw)) {
        const auto c = static_cast<unsigned char>(ch);
        if (std::isalnum(c) || std::string_view("-_.!~*'()").find(static_cast<char>(c)) != std::string_view::npos)
            out += static_cast<char>(c);
        else
            out += '%', out += hex[c >> 4], out += hex[c & 15];
    }
    return out;
}

inline std::string base64(std::string_view bytes) {
    static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
        if (i + 1 < bytes.size()) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
        if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
        out += i + 2 < bytes.size() ? table[v & 63] : '=';
    }
    return out;
}

/// A number for JSON: 6 significant digits are more than a bar or a percentage needs.
inline std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

inline std::string with_thousands(std::size_t n) {
    std::string digits = std::to_string(n), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

// The page's style and script. The script builds every card with textContent (never innerHTML)
// and keeps its state (label filter, confidence threshold, sort, page) in the URL fragment, so a
// label link is a plain href="#label=..." and every view can be bookmarked.
inline constexpr const char* style = R"CSS(
:root{--bg:#f4f5f7;--card:#fff;--ink:#1d2330;--muted:#6b7280;--line:#e3e6ea;--accent:#2f6fdf;--bar:#c9d8f6;--bad:#c62828}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header,main,.stats,.controls,.labels{padding:0 24px}
header{padding-top:18px;background:var(--card);border-bottom:1px solid var(--line);padding-bottom:14px}
h1{margin:0 0 6px;font-size:20px}h1 small{font-weight:400;color:var(--muted)}
.query{font-size:18px;margin:2px 0 8px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;overflow-wrap:anywhere}
details summary{cursor:pointer}details ol{margin:4px 0;padding-left:22px;max-height:12em;overflow:auto}
.stats{margin:14px 0 0;color:var(--muted)}.stats b{color:var(--ink)}.stats .warn{color:var(--bad)}
.labels{display:flex;flex-wrap:wrap;gap:6px;margin:12px 0 0}
.labels .what{color:var(--muted);align-self:center;margin-right:4px}
.labels details{display:contents}.labels summary{align-self:center;color:var(--muted);padding:3px 6px}
.labels details[open] summary{flex-basis:100%}
.chip{display:inline-flex;gap:6px;align-items:center;padding:3px 10px;border:1px solid var(--line);border-radius:999px;background:var(--card);color:var(--ink);text-decoration:none}
.chip b{font-weight:600;color:var(--accent)}.chip.zero{opacity:.55}.chip.bad b{color:var(--bad)}
.chip[aria-current]{background:var(--accent);border-color:var(--accent);color:#fff}.chip[aria-current] b{color:#fff}
.controls{display:flex;flex-wrap:wrap;gap:18px;align-items:center;margin:12px 0}
.controls label{display:flex;gap:6px;align-items:center}
#status{color:var(--muted)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px;min-width:0}
.card.failed{border-color:var(--bad);background:#fff6f6}
.thumb{height:160px;display:flex;align-items:center;justify-content:center;background:#eceef1;border-radius:5px;overflow:hidden;margin-bottom:8px}
.thumb img{max-width:100%;max-height:160px;image-rendering:auto}
.nothumb{color:var(--muted);font-size:12px}
.name{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere;white-space:pre-wrap;margin-bottom:6px}
.name .dir{display:block;color:var(--muted);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.error{color:var(--bad);font-size:12px;overflow-wrap:anywhere;white-space:pre-wrap}
.note{color:var(--muted);font-size:12px;overflow-wrap:anywhere}
.row{display:grid;grid-template-columns:1fr auto;column-gap:8px;font-size:13px;margin-top:4px}
.row a{color:inherit;text-decoration:none;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.row a:hover{text-decoration:underline}
.row .pct{color:var(--muted);font-variant-numeric:tabular-nums}
.row.top{font-weight:600}.row.top .pct{color:var(--ink)}
.bar{grid-column:1/3;height:5px;background:#eef1f5;border-radius:3px;overflow:hidden}
.fill{display:block;height:100%;background:var(--bar)}.row.top .fill{background:var(--accent)}
.rank{font-size:12px;color:var(--muted)}
.pager{display:flex;gap:10px;align-items:center;justify-content:center;margin:16px 0 28px}
.pager a{padding:4px 12px;border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--ink);text-decoration:none}
.pager a[aria-disabled]{pointer-events:none;opacity:.4}
.empty{color:var(--muted);padding:30px 0;text-align:center}
)CSS";

inline constexpr const char* script = R"JS(
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("zc-meta").textContent);
  var cards = JSON.parse(document.getElementById("zc-cards").textContent);
  var labels = meta.labels, search = meta.command === "search", PAGE = meta.page;
  var defaultSort = search ? "rank" : "input";
  cards.forEach(function (c, i) { c.i = i; });
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function top1(c) { return c.k && c.k.length ? c.k[0][1] : -1; }
  function readState() {
    var st = {label: null, failed: false, below: 1, sort: defaultSort, page: 0};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var p = kv.indexOf("="), k = kv.slice(0, p), v;
      if (p < 0) return;
      try { v = decodeURIComponent(kv.slice(p + 1)); } catch (e) { return; }
      if (k === "label") st.label = v;
      else if (k === "failed") st.failed = v === "1";
      else if (k === "below") { var x = parseFloat(v); if (x > 0 && x <= 1) st.below = x; }
      else if (k === "sort" && sorters[v]) st.sort = v;
      else if (k === "page") st.page = Math.max(0, parseInt(v, 10) || 0);
    });
    return st;
  }
  function hashOf(st) {
    var parts = [];
    if (st.label !== null) parts.push("label=" + encodeURIComponent(st.label));
    if (st.failed) parts.push("failed=1");
    if (st.below < 1) parts.push("below=" + st.below);
    if (st.sort !== defaultSort) parts.push("sort=" + st.sort);
    if (st.page > 0) parts.push("page=" + st.page);
    return "#" + parts.join("&");
  }
  function changed(change) {
    var st = readState();
    st.page = 0;
    for (var k in change) st[k] = change[k];
    return hashOf(st);
  }
  var byInput = function (a, b) { return a.i - b.i; };
  var sorters = {
    input: byInput, rank: byInput,
    name: function (a, b) { return a.n < b.n ? -1 : a.n > b.n ? 1 : a.i - b.i; },
    conf: function (a, b) { return top1(a) - top1(b) || a.i - b.i; },
    "conf-desc": function (a, b) { return top1(b) - top1(a) || a.i - b.i; }
  };
  function keep(c, st) {
    if (st.failed) return !!c.e;
    if (st.label !== null && (!c.k || !c.k.length || labels[c.k[0][0]] !== st.label)) return false;
    if (st.below < 1 && !(c.e || top1(c) < st.below)) return false;
    return true;
  }
  function bar(fraction) {
    var b = el("span", "bar"), f = el("span", "fill");
    f.style.width = (Math.max(0, Math.min(1, fraction)) * 100).toFixed(2) + "%";
    b.appendChild(f);
    return b;
  }
  function card(c) {
    var a = el("article", "card" + (c.e ? " failed" : ""));
    a.setAttribute("data-index", c.i);
    var thumb = el("div", "thumb");
    if (c.t) {
      var img = el("img");
      img.loading = "lazy"; img.decoding = "async"; img.alt = "";
      img.src = "data:image/jpeg;base64," + c.t;
      thumb.appendChild(img);
    } else {
      thumb.appendChild(el("span", "nothumb", c.e ? "failed" : "no preview"));
    }
    a.appendChild(thumb);
    var name = el("div", "name"), slash = c.n.lastIndexOf("/");
    if (slash >= 0) name.appendChild(el("span", "dir", c.n.slice(0, slash + 1)));
    name.appendChild(document.createTextNode(c.n.slice(slash + 1)));
    name.title = c.n;
    a.appendChild(name);
    if (c.e) a.appendChild(el("div", "error", c.e));
    if (c.w) a.appendChild(el("div", "note", c.w));
    if (search) {
      var r = el("div", "row top");
      r.appendChild(el("span", "rank", "#" + c.r + " cosine"));
      r.appendChild(el("span", "pct", c.s.toFixed(4)));
      r.appendChild(bar(c.s));
      a.appendChild(r);
    }
    (c.k || []).forEach(function (kp, j) {
      var row = el("div", "row" + (j === 0 ? " top" : "")), link = el("a", "label", labels[kp[0]]);
      link.href = changed({label: labels[kp[0]], failed: false});
      link.title = labels[kp[0]];
      row.appendChild(link);
      row.appendChild(el("span", "pct", (kp[1] * 100).toFixed(1) + "%"));
      var b = bar(kp[1]);
      b.firstChild.setAttribute("data-prob", kp[1]);
      row.appendChild(b);
      a.appendChild(row);
    });
    return a;
  }
  function pageLink(text, page, pages) {
    var link = el("a", null, text), st = readState();
    st.page = page;
    if (page < 0 || page >= pages) link.setAttribute("aria-disabled", "true");
    else link.href = hashOf(st);
    return link;
  }
  function render() {
    var st = readState();
    var list = cards.filter(function (c) { return keep(c, st); }).sort(sorters[st.sort]);
    var pages = Math.max(1, Math.ceil(list.length / PAGE));
    if (st.page >= pages) st.page = pages - 1;
    var first = st.page * PAGE, shown = list.slice(first, first + PAGE);
    var grid = $("grid"), frag = document.createDocumentFragment();
    shown.forEach(function (c) { frag.appendChild(card(c)); });
    grid.textContent = "";
    grid.appendChild(frag);
    $("empty").hidden = list.length > 0;
    var what = st.failed ? " failed" : "";
    if (st.label !== null) what += " with top-1 \u201c" + st.label + "\u201d";
    if (st.below < 1) what += " with top-1 below " + Math.round(st.below * 100) + "% (or failed)";
    $("status").textContent = list.length ? "Showing " + (first + 1) + "\u2013" + (first + shown.length) + " of " +
        list.length + what + (list.length === cards.length ? "" : " (" + cards.length + " in the report)") : "";
    var pager = $("pager");
    pager.textContent = "";
    if (pages > 1) {
      pager.appendChild(pageLink("\u2190 previous", st.page - 1, pages));
      pager.appendChild(el("span", null, "page " + (st.page + 1) + " of " + pages));
      pager.appendChild(pageLink("next \u2192", st.page + 1, pages));
    }
    Array.prototype.forEach.call(document.querySelectorAll(".chip"), function (chip) {
      var failedChip = chip.hasAttribute("data-failed"), label = failedChip ? null : chip.getAttribute("data-label");
      var active = failedChip ? st.failed : label === null ? st.label === null && !st.failed : st.label === label;
      if (active) chip.setAttribute("aria-current", "true"); else chip.removeAttribute("aria-current");
      if (failedChip) chip.href = hashOf({label: null, failed: true, below: 1, sort: st.sort, page: 0});
      else chip.href = hashOf({label: label, failed: false, below: st.below, sort: st.sort, page: 0});
    });
    if ($("sort")) $("sort").value = st.sort;
    if ($("below")) { $("below").value = st.below; $("below-out").textContent = st.below < 1 ? Math.round(st.below * 100) + "%" : "off"; }
  }
  if ($("sort")) $("sort").addEventListener("change", function () { location.hash = changed({sort: this.value}); });
  if ($("below")) {
    $("below").addEventListener("input", function () { $("below-out").textContent = this.value < 1 ? Math.round(this.value * 100) + "%" : "off"; });
    $("below").addEventListener("change", function () { location.hash = changed({below: parseFloat(this.value)}); });
  }
  window.addEventListener("hashchange", render);
  render();
  document.documentElement.setAttribute("data-rendered", "true");
})();
)JS";

}  // namespace report_detail

/// What the report says about the run before the first result.
struct report_header {
    std::string command;                 ///< "classify" or "search"
    std::string model;                   ///< the --model path
    std::vector<std::string> labels;     ///< classify: the labels, in order
    std::vector<std::string> templates;  ///< classify: the prompt templates
    std::string query;                   ///< search: the query text
    std::string index;                   ///< search: the index file and how many rows it holds
    std::size_t expected = 0;            ///< images to come (for the title)
    std::string date;                    ///< when the run started, e.g. utc_now()
};

/// One image of the report.
struct report_card {
    std::string path;
    std::string error;                         ///< non-empty: this file failed
    std::vector<std::pair<int, float>> top;    ///< classify: (label index, probability), best first
    float score = 0;                           ///< search: cosine to the query
    std::size_t rank = 0;                      ///< search: 1-based
    std::string thumbnail_jpeg;                ///< JPEG bytes; empty: no preview
    std::string note;                          ///< shown small, e.g. why there is no preview
};

/// Known after the last result.
struct report_summary {
    double seconds = 0;  ///< run time
};

/// The current time in UTC, "2026-12-02 01:06 UTC".
inline std::string utc_now() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
    return buf;
}

/// The longest side of a report thumbnail, in pixels.
inline constexpr int thumbnail_side = 160;

/// JPEG bytes of a preview of `image` (longest side <= thumbnail_side), or empty when none can be
/// made (the card then says "no preview"; a preview never fails a file).
inline std::string thumbnail_jpeg(const zeroclip::decoded_image& image) noexcept {
    try {
        const std::vector<std::uint8_t> jpeg = zeroclip::encode_jpeg(zeroclip::make_thumbnail(image, thumbnail_side), 75);
        return std::string(jpeg.begin(), jpeg.end());
    } catch (...) {
        return {};
    }
}

/// Writes the report in pieces to `sink` as results arrive: begin(), add() per image, finish().
/// At most `max_cards` cards are embedded; later ones still count in the summary, and the page
/// says how many it shows and that `--format jsonl` lists them all.
class html_report {
public:
    using sink = std::function<void(const std::string&)>;
    static constexpr std::size_t default_max_cards = 20000;
    static constexpr int cards_per_page = 200;

    explicit html_report(sink write, std::size_t max_cards = default_max_cards)
        : write_(std::move(write)), max_cards_(max_cards) {}

    void begin(const report_header& header) {
        using namespace report_detail;
        header_ = header;
        top1_counts_.assign(header.labels.size(), 0);
        const bool search = header.command == "search";
        std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
        h += "<meta http-equiv=\"Content-Security-Policy\" content=\"" + content_security_policy() + "\">\n";
        h += "<meta name=\"referrer\" content=\"no-referrer\">\n";
        h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
        h += "<meta name=\"generator\" content=\"zeroclip " + html_escape(header.command) + "\">\n";
        h += "<title>zeroclip " + html_escape(header.command) + ": " +
             (search ? html_escape(header.query) : with_thousands(header.expected) + " images") + "</title>\n";
        h += std::string("<style>") + style + "</style>\n</head>\n<body>\n<header>\n";
        h += "<h1>zeroclip " + html_escape(header.command) + " <small>" + with_thousands(header.expected) +
             (search ? " results" : " images") + "</small></h1>\n";
        if (search) h += "<p class=\"query\">Query: <b>" + html_escape(header.query) + "</b></p>\n";
        h += "<dl class=\"meta\">\n<dt>Model</dt><dd>" + html_escape(header.model) + "</dd>\n";
        if (search) h += "<dt>Index</dt><dd>" + html_escape(header.index) + "</dd>\n";
        if (!search) {
            h += "<dt>Labels</dt><dd>" + list_details(header.labels, "label", "labels") + "</dd>\n";
            h += "<dt>Templates</dt><dd>" + list_details(header.templates, "template", "templates") + "</dd>\n";
        }
        h += "<dt>Date</dt><dd>" + html_escape(header.date) + "</dd>\n</dl>\n</header>\n";
        h += "<script type=\"application/json\" id=\"zc-meta\">{\"command\":" + script_json_string(header.command) +
             ",\"page\":" + std::to_string(cards_per_page) + ",\"labels\":[";
        for (std::size_t i = 0; i < header.labels.size(); ++i) h += (i ? "," : "") + script_json_string(header.labels[i]);
        h += "]}</script>\n<script type=\"application/json\" id=\"zc-cards\">[";
        write_(h);
    }

    void add(const report_card& card) {
        using namespace report_detail;
        ++added_;
        if (!card.error.empty()) ++failed_;
        else if (!card.top.empty() && card.top[0].first >= 0 &&
                 static_cast<std::size_t>(card.top[0].first) < top1_counts_.size())
            ++top1_counts_[static_cast<std::size_t>(card.top[0].first)];
        if (shown_ >= max_cards_) return;
        std::string j = shown_++ ? ",\n{\"n\":" : "\n{\"n\":";
        j += script_json_string(card.path);
        if (!card.thumbnail_jpeg.empty()) j += ",\"t\":\"" + base64(card.thumbnail_jpeg) + "\"";
        if (!card.error.empty()) j += ",\"e\":" + script_json_string(card.error);
        if (!card.note.empty()) j += ",\"w\":" + script_json_string(card.note);
        if (header_.command == "search") j += ",\"s\":" + number(card.score) + ",\"r\":" + std::to_string(card.rank);
        if (card.error.empty() && !card.top.empty()) {
            j += ",\"k\":[";
            for (std::size_t r = 0; r < card.top.size(); ++r)
                j += (r ? ",[" : "[") + std::to_string(card.top[r].first) + "," + number(card.top[r].second) + "]";
            j += "]";
        }
        write_(j + "}");
    }

    void finish(const report_summary& summary) {
        using namespace report_detail;
        const bool search = header_.command == "search";
        std::string h = "\n]</script>\n<noscript><p class=\"stats\">The image grid needs JavaScript (inline, no "
                        "network access).</p></noscript>\n<p class=\"stats\">";
        char seconds[64];
        std::snprintf(seconds, sizeof seconds, "%.1f s", summary.seconds);
        if (search) {
            h += "<b>" + with_thousands(added_) + "</b> results";
        } else {
            h += "<b>" + with_thousands(added_) + "</b> images: <b>" + with_thousands(added_ - failed_) +
                 "</b> classified, <b" + (failed_ ? " class=\"warn\"" : "") + ">" + with_thousands(failed_) + "</b> failed";
        }
        h += " &middot; run time <b>" + std::string(seconds) + "</b>";
        if (!search && summary.seconds > 0) {
            std::snprintf(seconds, sizeof seconds, "%.1f", static_cast<double>(added_) / summary.seconds);
            h += " (" + std::string(seconds) + " images/s)";
        }
        h += "</p>\n";
        if (shown_ < added_)
            h += "<p class=\"stats warn\" id=\"truncated\">This report shows the first " + with_thousands(shown_) + " of " +
                 with_thousands(added_) + " images (counts below cover all of them). Every result: run the same "
                 "command with <code>--format jsonl</code>.</p>\n";
        if (!search) h += label_chips();
        h += "<div class=\"controls\"><label>Sort <select id=\"sort\">";
        h += search ? "<option value=\"rank\">by score</option><option value=\"name\">by file name</option>"
                    : "<option value=\"input\">input order</option><option value=\"name\">by file name</option>"
                      "<option value=\"conf\">least confident first</option>"
                      "<option value=\"conf-desc\">most confident first</option>";
        h += "</select></label>";
        if (!search)
            h += "<label title=\"the images to check\">Only top-1 below <input id=\"below\" type=\"range\" min=\"0.05\" "
                 "max=\"1\" step=\"0.05\" value=\"1\"> <output id=\"below-out\">off</output></label>";
        h += "<span id=\"status\"></span></div>\n<main>\n<div class=\"grid\" id=\"grid\"></div>\n"
             "<p class=\"empty\" id=\"empty\" hidden>No image matches this filter.</p>\n"
             "<nav class=\"pager\" id=\"pager\"></nav>\n</main>\n";
        h += std::string("<script>") + script + "</script>\n</body>\n</html>\n";
        write_(h);
    }

    /// The page's Content-Security-Policy: nothing may load from anywhere; images only from data:
    /// URIs, style only inline, and only the report's own script runs (allowed by its hash).
    static std::string content_security_policy() {
        return "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-" +
               report_detail::base64(std::string_view(reinterpret_cast<const char*>(sha256(report_detail::script).data()), 32)) +
               "'; base-uri 'none'; form-action 'none'";
    }

private:
    // "3 labels" opening to the numbered list.
    static std::string list_details(const std::vector<std::string>& items, const char* one, const char* many) {
        using namespace report_detail;
        std::string h = items.size() == 1 ? html_escape(items[0])
                                          : "<details><summary>" + with_thousands(items.size()) + " " + many +
                                                (items.empty() ? "" : ": " + html_escape(items[0]) + ", &hellip;") +
                                                "</summary><ol>";
        if (items.size() == 1) return h + " <small>(1 " + one + ")</small>";
        for (const auto& item : items) h += "<li>" + html_escape(item) + "</li>";
        return h + "</ol></details>";
    }

    // The per-label summary: how many images have each label as top-1, most first; each a link
    // that filters the grid.
    std::string label_chips() const {
        using namespace report_detail;
        std::vector<std::size_t> order(top1_counts_.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return top1_counts_[a] > top1_counts_[b]; });
        auto chip = [&](std::size_t i) {
            return std::string("<a class=\"chip") + (top1_counts_[i] ? "" : " zero") + "\" data-label=\"" +
                   html_escape(header_.labels[i]) + "\" href=\"#label=" + url_component(header_.labels[i]) + "\">" +
                   html_escape(header_.labels[i]) + " <b>" + with_thousands(top1_counts_[i]) + "</b></a>";
        };
        std::string h = "<nav class=\"labels\" aria-label=\"top-1 label\"><span class=\"what\">Top-1 label</span>"
                        "<a class=\"chip\" href=\"#\">all <b>" + with_thousands(added_) + "</b></a>";
        if (failed_)
            h += "<a class=\"chip bad\" data-failed=\"\" href=\"#failed=1\">failed <b>" + with_thousands(failed_) + "</b></a>";
        std::size_t unused = 0;
        for (std::size_t i : order) {
            if (top1_counts_[i]) h += chip(i);
            else ++unused;
        }
        if (unused) {  // labels no image got: folded away, they would bury the ones that matter
            h += "<details class=\"unused\"><summary>" + with_thousands(unused) + " more, top-1 of no image</summary>";
            for (std::size_t i : order)
                if (!top1_counts_[i]) h += chip(i);
            h += "</details>";
        }
        return h + "</nav>\n";
    }

    sink write_;
    std::size_t max_cards_;
    report_header header_;
    std::vector<std::size_t> top1_counts_;
    std::size_t added_ = 0, shown_ = 0, failed_ = 0;
};

/// Where a report goes: `path` through zeroclip::atomic_output (nothing appears until commit()),
/// or stdout when there is no path. Opened before the work starts, so a bad path fails first.
class report_destination {
public:
    explicit report_destination(const std::optional<std::string>& path) {
        if (path) file_ = std::make_unique<zeroclip::atomic_output>(*path);
    }
    void write(const std::string& s) {
        if (file_) {
            file_->write(s);
        } else if (!s.empty() && std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) {
            throw zeroclip::error(zeroclip::errc::io, "cannot write the report to standard output");
        }
    }
    void commit() {
        if (file_) file_->commit();
        else if (std::fflush(stdout) != 0) throw zeroclip::error(zeroclip::errc::io, "cannot write the report to standard output");
    }

private:
    std::unique_ptr<zeroclip::atomic_output> file_;
};

/// Previews of image files decoded here (search has no images in memory), `threads` at a time.
/// A file that cannot be previewed gets an empty preview and its error in `errors`.
inline std::vector<std::string> thumbnails_of_files(const std::vector<std::string>& paths, std::size_t max_pixels,
                                                    unsigned threads, std::vector<std::string>& errors) {
    std::vector<std::string> out(paths.size());
    errors.assign(paths.size(), {});
    std::atomic<std::size_t> next{0};
    auto work = [&] {
        for (std::size_t i; (i = next++) < paths.size();) {
            try {
                out[i] = thumbnail_jpeg(zeroclip::decode_image_file(paths[i], max_pixels));
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < std::min<std::size_t>(std::max(1u, threads), paths.size()); ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    return out;
}

}  // namespace zeroclip_cli
