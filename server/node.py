"""Server endpoints: ``/`` (the welcome), ``/_all_dbs``, ``/_uuids``, ``/_up`` and
``/_session`` (cookie sign-in and sign-out; who a request is: auth.py), and
``/_dbs_info`` (many databases' info at once)."""
from __future__ import annotations

import os
import shutil
import uuid

from settee.store import BadRequest, DatabaseNotFound, new_id

from .databases import database_info
from .errors import HTTPError, bad_request
from .params import Params

VERSION = "0.1.0"

#: Most databases one POST /_dbs_info may name (CouchDB's
#: ``max_db_number_for_dbs_info_req``).
MAX_DBS_INFO_KEYS = 100

#: Largest body of a POST /_session (a name and a password), which anyone may send.
SESSION_MAX_BODY = 64 * 1024


class NodeEndpoints:
    """What the server as a whole answers."""

    def __init__(self, http, auth):
        self.http = http
        self.auth = auth

    def on_root(self, request):
        settings = self.http.settings
        return self.http.respond(request, {
            "couchdb": "Welcome", "version": "3.3.3", "settee": VERSION,
            "git_sha": "settee",
            "uuid": uuid.uuid5(uuid.NAMESPACE_URL,
                               os.path.abspath(settings["storage_data_dir"])).hex,
            "features": ["settee-python-views", "settee-yaml"],
            "vendor": {"name": "Settee", "version": VERSION}})

    def on_all_dbs(self, request):
        return self.http.respond(request, self.listed_names(request))

    def on_dbs_info(self, request):
        """``GET``: each database of the ``_all_dbs`` listing with its info; ``POST``:
        those its ``keys`` name (at most :data:`MAX_DBS_INFO_KEYS`), a missing one as
        ``{"key": name, "error": "not_found"}``."""
        if request.method == "GET":
            names = self.listed_names(request)
        else:
            keys = self.http.json_object(request).get("keys")
            if keys is None:
                raise bad_request("`keys` member must exist.")
            if not isinstance(keys, list):
                raise bad_request("`keys` member must be an array.")
            if len(keys) > MAX_DBS_INFO_KEYS:
                raise bad_request(f"too_many_keys: at most {MAX_DBS_INFO_KEYS} databases "
                                  "per request")
            names = keys
        rows = []
        for name in names:
            try:
                if not isinstance(name, str):
                    raise DatabaseNotFound(str(name))
                rows.append({"key": name, "info": database_info(self.http.db(name))})
            except (DatabaseNotFound, BadRequest):
                rows.append({"key": name, "error": "not_found"})
        return self.http.respond(request, rows)

    def listed_names(self, request) -> list[str]:
        """The database names ``_all_dbs``' parameters select, in order."""
        p = Params(request.args)
        names = self.http.catalog.names()
        if p.bool("descending"):
            names.reverse()
        start, end = p.first("startkey", "start_key"), p.first("endkey", "end_key")
        desc = p.bool("descending")
        if not all(isinstance(key, (str, type(None))) for key in (start, end)):
            raise bad_request("startkey and endkey of _all_dbs must be JSON strings")
        if start is not None:
            names = [n for n in names if (n <= start if desc else n >= start)]
        if end is not None:
            names = [n for n in names if (n >= end if desc else n <= end)]
        skip = p.int("skip", 0)
        limit = p.int("limit")
        return names[skip:skip + limit if limit is not None else None]

    def on_uuids(self, request):
        count = Params(request.args).int("count", 1, minimum=1, maximum=1000)
        return self.http.respond(request, {"uuids": [new_id() for _ in range(count)]},
                                 headers={"Cache-Control": "must-revalidate, no-cache",
                                          "Pragma": "no-cache"})

    def on_up(self, request):
        settings = self.http.settings
        data_dir = settings["storage_data_dir"]
        if self.http.catalog.in_memory:
            return self.http.respond(request, {"status": "ok", "seeds": {}})
        try:
            probe = os.path.join(data_dir, f".up-{os.getpid()}")
            with open(probe, "wb") as f:
                f.write(b"ok")
            os.unlink(probe)
            free = shutil.disk_usage(data_dir).free
        except OSError as e:
            raise HTTPError(503, "unavailable", f"storage not writable: {e.strerror}") from e
        floor = settings["storage_free_space_floor"]
        if free < floor:
            raise HTTPError(503, "unavailable", f"{free} bytes free, below the floor of {floor}")
        return self.http.respond(request, {"status": "ok", "seeds": {}, "free_bytes": free})

    def on_session(self, request):
        http = self.http
        if request.method == "GET":
            user = request.user
            info = {"authentication_handlers": ["cookie", "default"]}
            if user.method:
                info["authenticated"] = user.method
            return http.respond(request, {"ok": True, "userCtx": user.ctx(), "info": info})
        if request.method == "DELETE":
            response = http.respond(request, {"ok": True})
            response.delete_cookie("AuthSession", path="/")
            return response
        http.data(request, SESSION_MAX_BODY)            # bounded, then parsed from memory
        if request.mimetype == "application/x-www-form-urlencoded":
            form = request.form
            name, password = form.get("name"), form.get("password")
        else:
            body = http.json_object(request)
            name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise bad_request("POST /_session needs a name and a password")
        user = self.auth.login(name, password)
        if user is None:
            raise HTTPError(401, "unauthorized", "Name or password is incorrect.")
        response = http.respond(request, {"ok": True, "name": user.name,
                                          "roles": list(user.roles)})
        response.set_cookie("AuthSession", self.auth.cookie_for(user.name), path="/",
                            max_age=http.settings["auth_session_timeout"], httponly=True,
                            samesite="Lax")
        return response
