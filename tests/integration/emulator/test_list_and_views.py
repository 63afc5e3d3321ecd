"""GET /v2/transcript paging, DELETE redaction, and the derived views."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.integration.emulator.helpers import MODELS, SCRIPT, client, submit, transcribe, upload
from tests.support.openapi import validate_response
from tests.support.reference import assemblyai
from tests.support.secrets import KEY_B
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import synth_wav

GO_SDK = ("fixtures", "go-sdk")


def _page(c: httpx.Client, **params: object) -> dict:
    r = c.get("/v2/transcript", params=params)
    assert r.status_code == 200, r.text
    return validate_response("listTranscripts", r)


def _qs(url: str | None) -> dict[str, str]:
    assert url is not None
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_list_paging_before_after_and_filters(make_server: Callable[..., LocalServer]) -> None:
    srv = make_server(concurrency_limit=50)
    with client(srv) as c:
        good = upload(c, synth_wav("Fine.", 1.0))
        bad = upload(c, b"not audio")
        ids = [submit(c, bad if i % 3 == 0 else good)["id"] for i in range(25)]
        srv.wait_until(lambda s: s["completed"] + s["errored"] == 25)
        newest_first = ids[::-1]

        first = _page(c, limit=10)
        assert [t["id"] for t in first["transcripts"]] == newest_first[:10]
        details = first["page_details"]
        assert details["limit"] == 10 and details["result_count"] == 10
        assert details["current_url"] == f"{srv.base_url}/v2/transcript?limit=10"
        assert details["next_url"] is None  # nothing newer
        assert _qs(details["prev_url"]) == {"limit": "10", "before_id": newest_first[9]}

        second = _page(c, **_qs(details["prev_url"]))
        assert [t["id"] for t in second["transcripts"]] == newest_first[10:20]
        # after_id: the page immediately newer than the anchor, still newest first.
        back = _page(c, **_qs(second["page_details"]["next_url"]))
        assert [t["id"] for t in back["transcripts"]] == newest_first[:10]
        last = _page(c, limit=10, before_id=newest_first[19])
        assert [t["id"] for t in last["transcripts"]] == newest_first[20:]
        assert last["page_details"]["prev_url"] is None
        assert _page(c, limit=200)["page_details"]["result_count"] == 25
        mid = _page(c, limit=3, after_id=ids[5])
        assert [t["id"] for t in mid["transcripts"]] == [ids[8], ids[7], ids[6]]

        errors = _page(c, status="error", limit=200)
        assert [t["id"] for t in errors["transcripts"]] == [
            i for i in newest_first if ids.index(i) % 3 == 0
        ]
        assert all(t["error"] and t["completed"] for t in errors["transcripts"])
        errs2 = _page(c, status="error", limit=2)
        assert _qs(errs2["page_details"]["prev_url"])["status"] == "error"
        today = first["transcripts"][0]["created"][:10]
        assert _page(c, created_on=today, limit=200)["page_details"]["result_count"] == 25
        assert _page(c, created_on="2001-01-01")["transcripts"] == []
        # Other projects have their own (empty) history.
        with client(srv, key=KEY_B) as other:
            assert _page(other)["transcripts"] == []
        item = first["transcripts"][0]
        assert item["resource_url"] == f"{srv.base_url}/v2/transcript/{item['id']}"
        assert len(item["created"]) == 26 and "+" not in item["created"]


def test_list_anchors_among_12000_transcripts(make_server: Callable[..., LocalServer]) -> None:
    srv = make_server()
    assert srv.state is not None
    store = srv.state.transcripts
    project = next(iter(srv.state._projects.values()))
    recs = [
        store.create(project, "https://x.test/a.wav", {"speech_models": MODELS}, 1e9)
        for _ in range(12_000)
    ]
    for r in recs[::2]:
        store.set_status(r, "completed")
    with client(srv) as c:
        for anchor in (recs[100], recs[6000], recs[11_900]):
            page = _page(c, limit=200, before_id=anchor.id)
            assert page["transcripts"][0]["id"] == recs[anchor.seq - 1].id
            page = _page(c, limit=200, after_id=anchor.id, status="completed")
            assert page["transcripts"][-1]["status"] == "completed"


def test_delete_redaction_matches_go_fixture(local_server: LocalServer) -> None:
    expected = json.loads(assemblyai(*GO_SDK, "deleted.json").read_text())
    with client(local_server) as c:
        t = transcribe(local_server, c)
        r = c.delete(f"/v2/transcript/{t['id']}")
        body = validate_response("deleteTranscript", r)
        again = c.get(f"/v2/transcript/{t['id']}").json()
        listed = _page(c, limit=50)
        assert c.get(f"/v2/transcript/{t['id']}/sentences").status_code == 400
    for key in ("audio_url", "text", "webhook_url", "words", "utterances", "confidence", "status"):
        assert body[key] == expected[key], key
    assert body["audio_duration"] == 12
    assert again == body
    item = next(i for i in listed["transcripts"] if i["id"] == t["id"])
    assert item["audio_url"] == "http://deleted_by_user"


def test_sentences_paragraphs_subtitles_word_search(local_server: LocalServer) -> None:
    with client(local_server) as c:
        t = transcribe(local_server, c, speaker_labels=True)
        tid = t["id"]
        sentences = validate_response(
            "getTranscriptSentences", c.get(f"/v2/transcript/{tid}/sentences")
        )
        paragraphs = validate_response(
            "getTranscriptParagraphs", c.get(f"/v2/transcript/{tid}/paragraphs")
        )
        srt = c.get(f"/v2/transcript/{tid}/srt")
        vtt = c.get(f"/v2/transcript/{tid}/vtt", params={"chars_per_caption": 20})
        search = validate_response(
            "wordSearch",
            c.get(
                f"/v2/transcript/{tid}/word-search", params={"words": "smoke,Johns Hopkins,zebra"}
            ),
        )
        redacted = c.get(f"/v2/transcript/{tid}/redacted-audio")
    texts = [s["text"] for s in sentences["sentences"]]
    assert texts[0] == "Wildfires in Canada are sending smoke south." and len(texts) == 6
    assert [s["speaker"] for s in sentences["sentences"]][:2] == ["A", "B"]
    assert " ".join(p["text"] for p in paragraphs["paragraphs"]) == SCRIPT
    assert srt.headers["content-type"].startswith("text/plain")
    blocks = srt.text.strip().split("\n\n")
    assert blocks[0].splitlines()[0] == "1"
    assert " --> " in blocks[0].splitlines()[1] and "," in blocks[0].splitlines()[1]
    assert vtt.text.startswith("WEBVTT\n\n")
    cues = [b.splitlines()[1] for b in vtt.text.split("\n\n")[1:] if b.strip()]
    assert all(len(line) <= 20 or " " not in line for line in cues)
    by_text = {m["text"]: m for m in search["matches"]}
    assert by_text["smoke"]["count"] == 3 and by_text["zebra"]["count"] == 0
    hop = by_text["Johns Hopkins"]
    assert hop["count"] == 1 and t["words"][hop["indexes"][0]]["text"] == "Johns"
    assert hop["timestamps"][0][1] == t["words"][hop["indexes"][0] + 1]["end"]
    assert search["total_count"] == 4
    assert redacted.status_code == 400  # no redact_pii_audio requested


def test_word_search_on_go_fixture_shape(local_server: LocalServer) -> None:
    shape = json.loads(assemblyai(*GO_SDK, "word-search.json").read_text())
    with client(local_server) as c:
        t = transcribe(
            local_server, c, text=assemblyai(*GO_SDK, "wildfires.txt").read_text(), duration=281
        )
        body = c.get(
            f"/v2/transcript/{t['id']}/word-search", params={"words": "hopkins,wildfires"}
        ).json()
    assert [m["text"] for m in body["matches"]] == [m["text"] for m in shape["matches"]]
    assert [m["count"] for m in body["matches"]] == [m["count"] for m in shape["matches"]]
    assert [m["indexes"] for m in body["matches"]] == [m["indexes"] for m in shape["matches"]]
