"""Build the embedded sample corpus under ``infra/sample/``.

Run: ``python -m lmforge.infra.make_sample``.

Every file is in the real format of its source and every word is written by this script:
procedural prose about an invented region (so a tiny model has something learnable), plus the
things each stage must catch: junk pages, all-caps banners, exact and near duplicates within and
across sources, planted PII next to look-alikes that must survive, toxic comments, redirects,
disambiguation pages, deleted and bot comments, vendored/minified/GPL code, and a few broken
records for the quarantine. The output is deterministic (fixed seeds, fixed timestamps).

This module is over the 400-line limit on purpose: most of it is the sample's content.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import random
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import zstandard
from lmforge.infra.sample_evals import make_evals
from lmforge.infra.sample_instruct import make_instructions, make_preferences, make_safety
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

OUT = Path(__file__).parent / "sample"
EPOCH = datetime(2024, 3, 1, tzinfo=UTC)

PLACES = ["Arvel", "Brenmoor", "Calder Reach", "Dunholt", "Eskbridge", "Farrowdale", "Glenmere",
          "Harwick", "Ilsby", "Jorvale", "Kestrel Bay", "Lowmarsh", "Millbrook", "Northwold",
          "Oakhollow", "Pellham", "Queensford", "Rookley", "Saltmere", "Thornbury"]
RIVERS = ["Senna", "Tarrow", "Velde", "Oss", "Marrow", "Linden"]
CROPS = ["barley", "oats", "apples", "potatoes", "flax", "rye", "pears", "beans"]
BUILDINGS = ["mill", "library", "bridge", "market hall", "chapel", "school", "harbour",
             "lighthouse", "museum", "railway station"]
MATERIALS = ["grey stone", "red brick", "oak timber", "slate", "limestone"]
USES = ["museum", "community hall", "school", "library", "workshop", "gallery"]
TRADES = ["weaving", "fishing", "boat building", "pottery", "clock making", "printing"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SEASONS = ["spring", "summer", "autumn", "winter"]
ADJ = ["old", "small", "famous", "quiet", "busy", "narrow", "large", "ancient", "new"]
EVENTS = ["flood", "fire", "storm", "harsh winter", "long drought"]

FACTS = [
    "{place} lies on the {dir} bank of the river {river}, about {n} kilometres from {place2}.",
    "The {adj} {building} in {place} was built in {year} and is now used as a {use}.",
    "Farmers in the valley grow {crop} and {crop2}, which they sell at the market every {day}.",
    "In {year}, a {event} damaged much of the old town, and the people rebuilt it with "
    "{material}.",
    "The town is known for its {trade}, a craft that families have passed down for generations.",
    "A road connects {place} with {place2}, and a small ferry crosses the {river} in {season}.",
    "The population grew slowly during the nineteenth century and reached about {pop} people "
    "by {year}.",
    "Visitors often walk along the river to see the {adj} {building} and the fields of {crop}.",
    "The local school teaches children to read and write, and it also keeps a garden of {crop}.",
    "Every {season}, the people of {place} hold a fair where traders bring {crop} and cloth.",
    "The climate is mild, with cool summers and wet winters that feed the river {river}.",
    "Historians believe that the first houses were built near the {building} around {year}.",
    "Most of the buildings in the centre are made of {material}, which was cut from nearby "
    "hills.",
    "The {river} is wide and slow at {place}, and it was once used to carry timber to the sea.",
    "After the railway arrived in {year}, the town became a busy place for trade in {crop}.",
    "The council of {place} meets in the {building} on the first {day} of every month.",
    "Many families in {place} still work in {trade}, although some now work in {place2}.",
    "The oldest street in the town leads from the {building} down to the banks of the {river}.",
    "Travellers from {place2} used to stop at {place} to rest their horses and buy {crop}.",
    "A small museum near the {building} shows tools that were used for {trade} long ago.",
    "During the war of {year}, soldiers camped in the fields between {place} and {place2}.",
    "Local legend says that a giant fish once lived in the deepest pool of the {river}.",
    "The annual boat race on the {river} attracts rowers from every village of the region.",
    "Children learn to swim in the shallow water below the {adj} weir each {season}.",
    "Most houses have steep roofs of {material}, because heavy snow falls in the hills.",
    "Two roads meet at the market square, where an iron fountain has stood since {year}.",
    "The parish records, kept since {year}, list every baptism and wedding in the town.",
    "Several painters have lived in {place}, drawn by the soft light over the water meadows.",
    "A narrow bridge of {material} joins the old quarter to the newer houses across the water.",
    "Each {day} morning a brass band plays on the green in front of the {building}.",
    "The soil near {place} is rich and dark, which suits {crop} better than any other crop.",
]
CHAT = [
    "I visited {place} last {season} and the {building} was really worth the trip.",
    "Does anyone know if the {building} in {place} is open on {day}?",
    "We grow {crop} in our garden too, and the trick is to water them early in the morning.",
    "The ferry across the {river} is slow but the view of the hills is lovely.",
    "My grandfather worked in {trade} in {place} for most of his life.",
    "Thanks for the tip, I will try the market in {place} on {day}.",
    "The road from {place} to {place2} is narrow, so drive carefully after rain.",
    "I think the {adj} {building} is the best thing to see in the whole valley.",
    "Has anyone tried the {crop} bread they sell at the fair? It is very good.",
    "The museum in {place} has a great room about the history of {trade}.",
]
NAMES = ["Anna", "Tomas", "Elin", "Marek", "Sofia", "Piet", "Lena", "Oskar", "Ida", "Bram"]
OPENERS = ["", "", "", "In the morning", "At dusk", "After the storm", "Later that year",
           "Without a word", "Once again", "Before long", "That winter", "On the third day",
           "Every evening", "Long ago", "Quite suddenly", "When the bells rang", "At first",
           "In the end", "By noon", "Some weeks later", "Near the water", "For a moment",
           "Now and then", "Despite the cold", "Under the old trees", "Just after dawn"]
SUBJECTS = ["{name}", "{name}", "old {name}", "the miller", "the ferryman", "a stranger",
            "the schoolteacher", "her brother", "the youngest son", "the baker from {place}",
            "a tired traveller", "the priest", "the two sisters", "the council clerk",
            "the blacksmith", "a boy from {place}", "the widow", "the carter", "{name}'s mother",
            "the lame soldier", "the innkeeper", "the girl with the lamp", "the old fisherman"]
VERBS = ["walked slowly to", "looked across", "repaired", "carried", "painted", "remembered",
         "found", "sold", "mended", "guarded", "cleaned", "followed the path to", "visited",
         "wrote a letter about", "dreamed of", "waited beside", "sang quietly near",
         "bargained over", "measured", "counted", "forgot about", "hid behind", "opened",
         "closed", "searched", "praised", "feared", "lit a fire near", "drew a map of",
         "argued about", "left", "returned to", "sketched"]
OBJECTS = ["the bridge", "the {river}", "a basket of {crop}", "the {building}", "the mill wheel",
           "a broken cart", "the churchyard", "an empty boat", "the market stalls",
           "a pile of letters", "the orchard", "the frozen pond", "a brass key", "the hayloft",
           "the long road to {place}", "a sack of flour", "the tavern door", "the kitchen",
           "the old well", "a wooden chest", "the harbour wall", "the barley field",
           "a silver coin", "the garden gate", "the schoolroom", "the fallen oak", "a lantern"]
ENDINGS = ["before the rain came", "while the bells rang", "and nobody said a word",
           "as the fog lifted", "without looking back", "for the last time",
           "though it was late", "with great care", "in silence", "as if nothing had happened",
           "until the candles burned low", "and then laughed", "because the letter said so",
           "while the dogs barked", "under a grey sky", "with trembling hands",
           "at the edge of town", "just as the clock struck", "as the children watched",
           "before anyone could stop it", "and sighed", "in the old way"]


class Prose:
    """Deterministic sentence generator over the invented region."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def fill(self, template: str, place: str | None = None) -> str:
        r = self.rng
        return template.format(
            place=place or r.choice(PLACES), place2=r.choice(PLACES), river=r.choice(RIVERS),
            dir=r.choice(["north", "south", "east", "west"]), n=r.randint(3, 60),
            adj=r.choice(ADJ), building=r.choice(BUILDINGS), year=r.randint(1650, 1950),
            use=r.choice(USES), crop=r.choice(CROPS), crop2=r.choice(CROPS), day=r.choice(DAYS),
            event=r.choice(EVENTS), material=r.choice(MATERIALS), trade=r.choice(TRADES),
            season=r.choice(SEASONS), pop=r.randint(5, 90) * 100, name=r.choice(NAMES),
            name2=r.choice(NAMES))

    def paragraph(self, templates: list[str], n: int, place: str | None = None) -> str:
        """``n`` sentences from different templates (a real text rarely repeats itself)."""
        picks = self.rng.sample(templates, min(n, len(templates)))
        return " ".join(self.fill(t, place) for t in picks)

    def article(self, place: str, paragraphs: int) -> list[str]:
        """Paragraphs whose sentences use each template at most once in the whole article."""
        order = self.rng.sample(FACTS, len(FACTS))
        size = max(3, min(6, len(order) // paragraphs))
        return [" ".join(self.fill(t, place) for t in order[i * size:(i + 1) * size])
                for i in range(paragraphs)]

    def story(self, sentences: int) -> str:
        """Narrative prose from a small grammar: every sentence is a fresh combination of
        short parts, so a novel-length text does not repeat its n-grams."""
        return " ".join(self._story_sentence() for _ in range(sentences))

    def _story_sentence(self) -> str:
        r = self.rng
        subject = r.choice(SUBJECTS).format(name=r.choice(NAMES), place=r.choice(PLACES))
        opener = r.choice(OPENERS)
        sentence = f"{opener + ', ' if opener else ''}{subject} {r.choice(VERBS)} " \
            f"{r.choice(OBJECTS)}"
        sentence = sentence.format(river=r.choice(RIVERS), crop=r.choice(CROPS),
                                   building=r.choice(BUILDINGS), place=r.choice(PLACES))
        if r.random() < 0.6:
            sentence += f" {r.choice(ENDINGS)}"
        return sentence[0].upper() + sentence[1:] + r.choice(".....!?")


def near_duplicate(text: str, rng: random.Random, edits: int = 3) -> str:
    """Replace a few words: Jaccard similarity on 5-word shingles stays high."""
    words = text.split(" ")
    for _ in range(edits):
        i = rng.randrange(len(words))
        words[i] = rng.choice(["very", "quite", "truly", "rather"])
    return " ".join(words)


# --- Wikipedia -----------------------------------------------------------------------------

WIKI_HEADER = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" \
xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>enwiki</dbname>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">Talk</namespace>
    </namespaces>
  </siteinfo>
"""


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def wiki_page(page_id: int, title: str, wikitext: str, ns: int = 0,
              redirect: str | None = None) -> str:
    stamp = (EPOCH - timedelta(days=page_id)).strftime("%Y-%m-%dT%H:%M:%SZ")
    redirect_tag = f'\n    <redirect title="{redirect}" />' if redirect else ""
    return f"""  <page>
    <title>{title}</title>
    <ns>{ns}</ns>
    <id>{page_id}</id>{redirect_tag}
    <revision>
      <id>{page_id * 10 + 1}</id>
      <timestamp>{stamp}</timestamp>
      <model>wikitext</model>
      <format>text/x-wiki</format>
      <text bytes="{len(wikitext)}" xml:space="preserve">{_xml_escape(wikitext)}</text>
    </revision>
  </page>
"""


def wiki_article(prose: Prose, place: str) -> str:
    paras = prose.article(place, 4)
    river = prose.rng.choice(RIVERS)
    return (
        "{{Infobox settlement\n| name = " + place + "\n| country = Westmark\n}}\n"
        f"'''{place}''' is a town in the [[Westmark]] region on the [[River {river}|{river}]]."
        "<ref>{{cite book |title=A History of Westmark |year=1921}}</ref> " + paras[0] + "\n\n"
        "== History ==\n" + paras[1] + "<ref name=\"survey\">Survey of 1902.</ref>\n\n"
        "== Economy ==\n" + paras[2] + "\n* " + prose.fill(FACTS[2], place) + "\n* "
        + prose.fill(FACTS[4], place) + "\n\n"
        "{| class=\"wikitable\"\n|-\n! Year !! Population\n|-\n| 1900 || 1200\n|}\n\n"
        "== Geography ==\n" + paras[3] + "\n\n"
        f"[[File:{place} bridge.jpg|thumb|The bridge at {place}]]\n"
        "[[Category:Towns in Westmark]]\n[[de:" + place + "]]\n"
    )


def shared_article() -> list[str]:
    """An article published both on Wikipedia and on a web site: a cross-source duplicate."""
    return Prose(99).article("Kestrel Bay", 3)


def make_wikipedia(prose: Prose, out: Path) -> None:
    pages = [WIKI_HEADER]
    articles = [wiki_article(prose, place) for place in PLACES]
    for i, (place, text) in enumerate(zip(PLACES, articles, strict=True)):
        pages.append(wiki_page(100 + i, place, text))
    # a copy of an article under another title with a few words changed: a near duplicate
    pages.append(wiki_page(200, f"{PLACES[0]} (town)", near_duplicate(articles[0], prose.rng)))
    pages.append(wiki_page(201, "Arvel Town", "#REDIRECT [[Arvel]]", redirect="Arvel"))
    pages.append(wiki_page(206, "Kestrel Bay harbour", "\n\n".join(shared_article())))
    pages.append(wiki_page(202, "Mill (disambiguation)",
                           "'''Mill''' may refer to:\n* [[Millbrook]]\n* [[Mill, Westmark]]\n"
                           "{{disambiguation}}"))
    pages.append(wiki_page(203, "Talk:Arvel", "This article needs more sources. ~~~~", ns=1))
    pages.append(wiki_page(204, "Westmark stub", "'''Westmark''' is a region.{{stub}}"))
    # an article with contact details that must be scrubbed
    contact = ("The tourist office of Glenmere answers questions by e-mail at "
               "office@glenmere-tourism.example.org or by phone on +44 20 7946 0958. "
               + prose.paragraph(FACTS, 5, "Glenmere"))
    pages.append(wiki_page(205, "Glenmere tourist office", contact))
    pages.append("</mediawiki>\n")
    (out / "wikipedia").mkdir(parents=True, exist_ok=True)
    xml = "".join(pages).encode()
    (out / "wikipedia" / "enwiki-20240301-pages-articles1.xml.bz2").write_bytes(bz2.compress(xml))
    # a multistream dump (one bz2 stream per group of pages, as Wikipedia publishes them) cut
    # off inside its last stream: the pages of the complete streams must still be read
    streams = [bz2.compress(WIKI_HEADER.encode())]
    streams += [bz2.compress("".join(pages[i:i + 2]).encode()) for i in range(1, 7, 2)]
    streams[-1] = streams[-1][: len(streams[-1]) // 2]
    (out / "wikipedia" / "enwiki-20240301-pages-articles-multistream2.xml.bz2").write_bytes(
        b"".join(streams))


# --- CommonCrawl WARC ---------------------------------------------------------------------

NAV = ("<nav><a href='/'>Home</a> | <a href='/news'>News</a> | <a href='/about'>About</a> | "
       "<a href='/contact'>Contact</a></nav>")
FOOTER = "<footer><p>Copyright 2024 Westmark Web. All rights reserved.</p></footer>"


def html_page(title: str, paragraphs: list[str], banner: str | None = None,
              charset: str = "utf-8") -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    banner_html = f"<p>{banner}</p>" if banner else ""
    page = (f"<!DOCTYPE html><html><head><meta charset='{charset}'><title>{title}</title>"
            f"</head><body>{NAV}<main><article><h1>{title}</h1>{banner_html}{body}</article>"
            f"</main>{FOOTER}</body></html>")
    return page.encode(charset)


def _warc_response(writer: WARCWriter, url: str, payload: bytes, content_type: str,
                   when: datetime) -> None:
    http = StatusAndHeaders("200 OK", [("Content-Type", content_type),
                                       ("Content-Length", str(len(payload)))],
                            protocol="HTTP/1.1")
    record = writer.create_warc_record(
        url, "response", payload=io.BytesIO(payload), http_headers=http,
        warc_headers_dict={"WARC-Date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>"})
    writer.write_record(record)


def web_pages(prose: Prose) -> list[tuple[str, bytes, str]]:
    pages: list[tuple[str, bytes, str]] = []
    for i, place in enumerate(PLACES[:14]):
        paras = prose.article(place, 3)
        banner = "SUBSCRIBE NOW TO GET THE BEST DEALS IN WESTMARK" if i % 4 == 0 else None
        pages.append((f"https://westmark-news.example.com/towns/{place.lower().replace(' ', '-')}",
                      html_page(f"Visiting {place}", paras, banner), "text/html; charset=utf-8"))
    guide = prose.article("Saltmere", 3)
    pages.append(("https://travel.example.net/saltmere", html_page("Saltmere guide", guide),
                  "text/html"))
    # the same guide syndicated on another site: an exact duplicate after extraction
    pages.append(("https://mirror.example.org/saltmere", html_page("Saltmere guide", guide),
                  "text/html"))
    # the same guide lightly edited: a near duplicate
    edited = [near_duplicate(p, prose.rng, 1) for p in guide]
    pages.append(("https://blog.example.org/saltmere-trip", html_page("Saltmere guide", edited),
                  "text/html"))
    pages.append(("https://kestrel-bay.example.org/harbour",
                  html_page("Kestrel Bay harbour", shared_article()), "text/html"))
    # a page declared as windows-1252 with a non-ASCII character
    pages.append(("https://old.example.com/cafe", html_page(
        "Café in Pellham", [prose.paragraph(FACTS, 6, "Pellham") + " The café serves tea."],
        charset="cp1252"), "text/html; charset=windows-1252"))
    # junk the quality rules must remove
    pages.append(("https://spam.example.com/win", html_page("WIN", [
        "### BEST ### PRICES ### CLICK ### HERE ### NOW ### " * 8]), "text/html"))
    pages.append(("https://spam.example.com/list", html_page("Links", [
        "Home... News... Deals... More... Login..."] * 12), "text/html"))
    pages.append(("https://short.example.com/", html_page("Hi", ["Welcome to our site."]),
                  "text/html"))
    pages.append(("https://numbers.example.com/table", html_page("Data", [
        " ".join(str(prose.rng.randint(0, 99999)) for _ in range(120))]), "text/html"))
    # planted PII in an otherwise good page, and look-alikes that must survive
    pii = (f"{' '.join(prose.article('Harwick', 5))} To book a room, write to "
           "bookings@harwick-inn.example.com or call +1 (415) 555-0132. Deposits can be paid "
           "with card 4111 1111 1111 1111 or by transfer to IBAN DE89 3704 0044 0532 0130 00. "
           "Our booking server runs at 192.168.12.7 and 2001:db8::8a2e:370:7334. The owner's "
           "social security number 536-22-1234 was printed by mistake. Staff log in at "
           "https://admin:hunter2@harwick-inn.example.com/panel to update prices. "
           "The booking software is version 3.12.1, released on 2024-01-05, and the guide book "
           "has ISBN 978-3-16-148410-0. The sample card number 4111 1111 1111 1112 is not valid.")
    pages.append(("https://harwick-inn.example.com/contact", html_page("Harwick Inn", [pii]),
                  "text/html"))
    # a hateful paragraph: the toxicity stage must drop this page
    pages.append(("https://forum.example.com/thread/9", html_page("Ferry timetable", [
        *prose.article("Eskbridge", 2),
        "Anyone who still takes that ferry is a stupid worthless idiot and should shut up."]),
        "text/html"))
    return pages


def make_commoncrawl(prose: Prose, out: Path) -> None:
    (out / "commoncrawl").mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for i, (url, payload, ctype) in enumerate(web_pages(prose)):
        _warc_response(writer, url, payload, ctype, EPOCH + timedelta(minutes=i))
    _warc_response(writer, "https://westmark-news.example.com/logo.png",
                   b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png", EPOCH)
    (out / "commoncrawl" / "CC-MAIN-20240301-00000.warc.gz").write_bytes(buf.getvalue())
    # a WARC whose second record has a broken header: the first record must still be read
    good = io.BytesIO()
    w2 = WARCWriter(good, gzip=True)
    _warc_response(w2, "https://westmark-news.example.com/weather", html_page(
        "Weather in Westmark", [prose.paragraph(FACTS, 6, "Northwold") for _ in range(2)]),
        "text/html", EPOCH)
    broken = gzip.compress(b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: banana\r\n\r\n",
                           mtime=0)
    (out / "commoncrawl" / "CC-MAIN-20240301-00001.warc.gz").write_bytes(good.getvalue() + broken)


# --- Reddit (Pushshift NDJSON + zstd, long window) ---------------------------------------

def _zstd_long(lines: list[bytes]) -> bytes:
    params = zstandard.ZstdCompressionParameters.from_level(
        19, window_log=31, enable_ldm=True, write_content_size=False)
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(
            buf, closefd=False) as out:
        for line in lines:
            out.write(line)
    return buf.getvalue()


def _comment(i: int, body: str, *, author: str = "walker", score: int = 5,
             subreddit: str = "westmark") -> dict[str, object]:
    return {"id": f"c{i:05x}", "name": f"t1_c{i:05x}", "author": author, "body": body,
            "score": score, "subreddit": subreddit, "created_utc": int(EPOCH.timestamp()) + i,
            "link_id": "t3_s00001", "parent_id": "t3_s00001",
            "permalink": f"/r/{subreddit}/comments/s00001/_/c{i:05x}/"}


def reddit_comments(prose: Prose) -> list[dict[str, object]]:
    items = []
    for i in range(260):
        items.append(_comment(i, prose.paragraph(CHAT, prose.rng.randint(2, 5)),
                              author=f"user{prose.rng.randint(1, 80)}",
                              score=prose.rng.randint(1, 40)))
    copy = "The ferry across the Senna is slow but the view of the hills is lovely, so go early."
    items += [_comment(300, copy), _comment(301, copy)]  # a copy-paste: exact duplicate
    items += [_comment(302, "[deleted]", author="[deleted]"), _comment(303, "[removed]")]
    items.append(_comment(304, "Your post was removed because it breaks rule 3 of this sub.",
                          author="AutoModerator"))
    items.append(_comment(305, prose.paragraph(CHAT, 3), score=-7))
    items += [
        _comment(306, "You are a stupid idiot and nobody cares about your worthless opinion."),
        _comment(307, "Shut up, you dumb moron, this is the most idiotic thing I have read."),
        _comment(308, "I have a box of old maps of the valley that my grandfather drew when "
                      "he worked on the ferry, and I would be happy to share them with anyone "
                      "who is interested in the history of the river towns. If you want the "
                      "scans, email me at maps.collector@example.net or text me at "
                      "+1 415 555 0199 and I will send them over this weekend."),
    ]
    return items


def reddit_submissions(prose: Prose) -> list[dict[str, object]]:
    items = []
    for i in range(40):
        place = prose.rng.choice(PLACES)
        link = i % 3 != 0
        items.append({
            "id": f"s{i:05x}", "name": f"t3_s{i:05x}", "author": f"user{i}",
            "title": f"Photos from my trip to {place}",
            "selftext": "" if link else prose.paragraph(CHAT, 4, place),
            "is_self": not link,
            "url": f"https://photos.example.com/{place.lower().replace(' ', '-')}/{i}" if link
            else f"https://www.reddit.com/r/westmark/comments/s{i:05x}/",
            "score": prose.rng.choice([0, 1, 2, 3, 5, 12, 40]), "num_comments": i % 7,
            "subreddit": "westmark", "created_utc": int(EPOCH.timestamp()) + 1000 + i,
            "permalink": f"/r/westmark/comments/s{i:05x}/",
        })
    return items


def make_reddit(prose: Prose, out: Path) -> list[dict[str, object]]:
    (out / "reddit").mkdir(parents=True, exist_ok=True)
    comments = [json.dumps(c).encode() + b"\n" for c in reddit_comments(prose)]
    comments.insert(50, b'{"id": "broken", "body": "this line is not valid json\n')
    comments.insert(90, b'{"id": "c_bad_utf8", "body": "caf\xe9 latin-1 bytes"}\n')
    (out / "reddit" / "RC_2024-03.zst").write_bytes(_zstd_long(comments))
    submissions = reddit_submissions(prose)
    subs = [json.dumps(s).encode() + b"\n" for s in submissions]
    (out / "reddit" / "RS_2024-03.zst").write_bytes(_zstd_long(subs))
    return submissions


def make_webtext(submissions: list[dict[str, object]], prose: Prose, out: Path) -> None:
    """The pages that Reddit submissions link to, crawled: with ``url_allowlist: reddit`` only
    those linked by submissions with karma >= 3 are kept (the WebText rule)."""
    (out / "webtext").mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for i, sub in enumerate(submissions):
        if sub["is_self"]:
            continue
        place = str(sub["title"]).rsplit(" ", 1)[-1] if sub["title"] else "Arvel"
        page = html_page(f"Photos of {place}", [prose.paragraph(FACTS, 5, place)
                                               for _ in range(2)])
        _warc_response(writer, str(sub["url"]), page, "text/html", EPOCH + timedelta(hours=i))
    (out / "webtext" / "linked-pages.warc.gz").write_bytes(buf.getvalue())


# --- Project Gutenberg books --------------------------------------------------------------

GUTENBERG_HEADER = """The Project Gutenberg eBook of {title}

This ebook is for the use of anyone anywhere in the United States and
most other parts of the world at no cost and with almost no restrictions
whatsoever. You may copy it, give it away or re-use it under the terms
of the Project Gutenberg License included with this ebook or online
at www.gutenberg.org.

Title: {title}

Author: {author}

Release date: {date} [eBook #{number}]

Language: English

Credits: Produced by the lmforge sample generator

{start}

"""
LICENSE_FOOTER = """

{end}

Updated editions will replace the previous one--the old editions will
be renamed.

Creating the works from print editions not protected by U.S. copyright
law means that no one owns a United States copyright in these works,
so the Foundation (and you!) can copy and distribute it in the
United States without permission and without paying copyright
royalties. Special rules, set forth in the General Terms of Use part
of this license, apply to copying and distributing Project
Gutenberg electronic works to protect the PROJECT GUTENBERG concept
and trademark. Contact the Foundation at info@example.org.
"""


def book(prose: Prose, title: str, author: str, number: int, chapters: int,
         start: str, end: str) -> str:
    parts = [f"{title.upper()}\n\nBy {author}\n\n"]
    for c in range(1, chapters + 1):
        parts.append(f"CHAPTER {c}\n\n")
        for _ in range(prose.rng.randint(5, 8)):
            para = prose.story(prose.rng.randint(3, 6))
            parts.append(textwrap.fill(para, width=70) + "\n\n")
    body = "".join(parts)
    head = GUTENBERG_HEADER.format(title=title, author=author, number=number,
                                   date="March 1, 2024", start=start.format(title=title.upper()))
    return head + body + LICENSE_FOOTER.format(end=end.format(title=title.upper()))


def make_books(prose: Prose, out: Path) -> None:
    (out / "books").mkdir(parents=True, exist_ok=True)
    specs = [
        ("The Miller of Arvel", "Maren Holt", 90001, 8,
         "*** START OF THE PROJECT GUTENBERG EBOOK {title} ***",
         "*** END OF THE PROJECT GUTENBERG EBOOK {title} ***"),
        ("A Winter on the Senna", "Jon Varga", 90002, 7,
         "*** START OF THIS PROJECT GUTENBERG EBOOK {title} ***",
         "*** END OF THIS PROJECT GUTENBERG EBOOK {title} ***"),
        ("Letters from Thornbury", "Edda Lind", 90003, 6,
         "***START OF THE PROJECT GUTENBERG EBOOK {title}***",
         "End of the Project Gutenberg EBook of {title}"),
    ]
    for title, author, number, chapters, start, end in specs:
        text = book(prose, title, author, number, chapters, start, end)
        name = f"pg{number}.txt"
        (out / "books" / name).write_text(text, encoding="utf-8")


# --- Source code ----------------------------------------------------------------------------

MIT = """MIT License

Copyright (c) 2024 The Westmark Tools Authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

CODE_FILES = {
    "westmark/__init__.py": '''"""Tools for the Westmark town records."""

from westmark.records import Town, load_towns
from westmark.stats import mean_population

__all__ = ["Town", "load_towns", "mean_population"]
''',
    "westmark/records.py": '''"""Town records: parsing and validation."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Town:
    """One town of the region with its river and population."""

    name: str
    river: str
    population: int

    def is_large(self, limit: int = 5000) -> bool:
        """Return True when the town has more people than the limit."""
        return self.population > limit


def parse_row(row: dict[str, str]) -> Town:
    """Build a town from one CSV row, stripping spaces around each value."""
    name = row["name"].strip()
    river = row["river"].strip()
    population = int(row["population"])
    if population < 0:
        raise ValueError(f"population of {name} cannot be negative")
    return Town(name=name, river=river, population=population)


def load_towns(path: Path) -> list[Town]:
    """Read every town from a CSV file with a header row."""
    with path.open(newline="") as handle:
        return [parse_row(row) for row in csv.DictReader(handle)]
''',
    "westmark/stats.py": '''"""Simple statistics over town records."""

from __future__ import annotations

from collections.abc import Iterable

from westmark.records import Town


def mean_population(towns: Iterable[Town]) -> float:
    """Average population; zero for an empty list."""
    values = [town.population for town in towns]
    if not values:
        return 0.0
    return sum(values) / len(values)


def by_river(towns: Iterable[Town]) -> dict[str, list[Town]]:
    """Group towns by the river they stand on."""
    groups: dict[str, list[Town]] = {}
    for town in towns:
        groups.setdefault(town.river, []).append(town)
    return groups


def largest(towns: Iterable[Town], count: int = 3) -> list[Town]:
    """The most populous towns, largest first."""
    return sorted(towns, key=lambda town: town.population, reverse=True)[:count]
''',
    "westmark/server.py": '''"""A tiny report server for the town records."""

# Maintainer: Ada Brenner <ada.brenner@westmark-tools.example.org>
# The staging database listens on 10.20.30.40; never expose it to the internet.

from http.server import BaseHTTPRequestHandler, HTTPServer


class ReportHandler(BaseHTTPRequestHandler):
    """Answer every GET request with a short plain-text report."""

    def do_GET(self) -> None:
        body = b"Westmark town records are online."
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(port: int = 8080) -> None:
    """Serve reports on localhost until interrupted."""
    HTTPServer(("127.0.0.1", port), ReportHandler).serve_forever()
''',
    "tests/test_stats.py": '''from westmark.records import Town
from westmark.stats import by_river, largest, mean_population


def test_mean_population():
    towns = [Town("Arvel", "Senna", 100), Town("Ilsby", "Oss", 300)]
    assert mean_population(towns) == 200


def test_by_river_groups_towns():
    towns = [Town("Arvel", "Senna", 100), Town("Dunholt", "Senna", 50)]
    assert list(by_river(towns)) == ["Senna"]


def test_largest_orders_by_population():
    towns = [Town("A", "x", 1), Town("B", "x", 3), Town("C", "x", 2)]
    assert [t.name for t in largest(towns, 2)] == ["B", "C"]
''',
    "web/app.js": '''// Render the list of towns on the page.
function renderTowns(towns) {
  const list = document.getElementById("towns");
  for (const town of towns) {
    const item = document.createElement("li");
    item.textContent = `${town.name} on the ${town.river}`;
    list.appendChild(item);
  }
}

fetch("/towns.json")
  .then((response) => response.json())
  .then(renderTowns);
''',
    "web/app.min.js": "function r(t){const l=document.getElementById('towns');"
    + "for(const n of t){const i=document.createElement('li');i.textContent=n.name;"
    + "l.appendChild(i)}}" * 20 + "\n",
    "node_modules/leftpad/index.js":
        "module.exports = function (s, n) { return s.padStart(n); };\n",
    "westmark/_generated_pb2.py": "# Generated by the protocol buffer compiler.  DO NOT EDIT!\n"
    "DESCRIPTOR = b'\\x0a\\x0btowns.proto'\n",
    "data/populations.py": "POPULATIONS = [" + ", ".join(str((i * 7919) % 100000)
                                                     for i in range(600)) + "]\n",
}

GPL_FILE = '''# SPDX-License-Identifier: GPL-3.0-or-later
"""A copyleft tool: excluded by the default permissive licence list."""


def ferry_times(start: int, step: int, count: int) -> list[int]:
    """Departure minutes of the ferry across the river."""
    return [start + step * i for i in range(count)]
'''


def make_code(out: Path) -> None:
    root = out / "code" / "westmark-tools"
    for rel, text in CODE_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "LICENSE").write_text(MIT)
    (root / "westmark" / "logo.py").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    gpl = out / "code" / "ferry-gpl"
    gpl.mkdir(parents=True, exist_ok=True)
    (gpl / "ferry.py").write_text(GPL_FILE)


def build(out: Path = OUT) -> Path:
    """Write the whole sample corpus under ``out``."""
    make_wikipedia(Prose(1), out)
    make_commoncrawl(Prose(2), out)
    make_webtext(make_reddit(Prose(3), out), Prose(5), out)
    make_books(Prose(4), out)
    make_code(out)
    make_evals(out / "eval")
    make_instructions(out / "instruct")
    make_preferences(out / "preference")
    make_safety(out / "safety")
    return out


def main() -> None:
    out = build()
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"sample corpus written to {out} ({total / 1024:.0f} KiB)")  # noqa: T201


if __name__ == "__main__":
    main()
