"""Conditional requests read the same way on every resource (server/conditional.py):
a list of tags, a proxy's W/ prefix, and * in If-None-Match; W/ in If-Match."""
from __future__ import annotations

import orjson
import pytest
from httpclient import make_app


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    app.put("/db")
    app.put("/db/doc", orjson.dumps({"n": 1}), content_type="application/json")
    rev = app.get("/db/doc").json["_rev"]
    app.put(f"/db/doc/a.txt?rev={rev}", b"hello", content_type="text/plain")
    app.put("/db/_design/d", orjson.dumps({"language": "python", "views": {
        "v": {"map": "def fun(doc):\n    yield doc['_id'], None"}}}),
        content_type="application/json")
    return app


PATHS = ["/db/doc", "/db/doc/a.txt", "/db/_design/d/_view/v"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("form", ['"other", {tag}', "W/{tag}", '"other",W/{tag}', "*"])
def test_if_none_match_reads_lists_weak_tags_and_star_everywhere(app, path, form):
    tag = app.get(path).headers["ETag"]
    r = app.get(path, headers={"If-None-Match": form.format(tag=tag)}, status=304)
    assert r.headers["ETag"] == tag
    app.get(path, headers={"If-None-Match": '"other"'}, status=200)


def test_if_match_with_a_weak_tag_names_the_base_revision_of_an_attachment(app):
    tag = app.get("/db/doc").headers["ETag"]
    r = app.put("/db/doc/b.txt", b"more", content_type="text/plain",
                headers={"If-Match": "W/" + tag})
    assert r.status_int == 201
