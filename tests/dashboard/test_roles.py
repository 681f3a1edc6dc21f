"""AppTest of named sign-in and roles: what a clinician, an analyst and an admin can see and do, all audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.access.audit import AuditLog
from flows.access.reviews import ReviewStore, access_db, confirmed_labels
from tests.dashboard.access_setup import PASSWORDS, AccessHome, build_access_home


@pytest.fixture(scope="module")
def access_home(tmp_path_factory: pytest.TempPathFactory) -> AccessHome:
    return build_access_home(tmp_path_factory.mktemp("roles") / "home")


@pytest.fixture
def signed_in(app_for, access_home: AccessHome, monkeypatch: pytest.MonkeyPatch):
    """Factory: an AppTest signed in as ``user`` (the home holds named users, so the form asks for a name)."""
    monkeypatch.setenv("CLINFUSE_REID_KEY", access_home.key.decode())

    def make(user: str, password: str | None = None):
        at = app_for(access_home.fixture.home).run()
        assert at.title[0].value == "clinfuse — sign in" and not at.dataframe
        at.text_input(key="sign_in_user").input(user)
        at.text_input(key="sign_in_password").input(password or PASSWORDS[user])
        return at.form_submit_button[0].click().run()

    return make


def _audit(access_home: AccessHome) -> list[dict]:
    return AuditLog(access_home.fixture.home / "access" / "audit.jsonl").entries()


def _text(at) -> str:
    return " ".join(str(e.value) for kind in ("title", "markdown", "caption", "error", "warning", "info", "success")
                    for e in getattr(at, kind))


def test_clinician_reveals_and_reviews(signed_in, access_home: AccessHome) -> None:
    at = signed_in("c.clinician")
    assert not at.exception and len(at.dataframe[0].value) == 8
    pid = access_home.fixture.patient_ids[0]
    at.switch_page("pages/patient.py").run()
    at.sidebar.selectbox[0].select(pid).run()
    assert not at.exception and access_home.mrns[pid] not in _text(at)  # not shown until asked
    at.button(key="reveal_mrn").click().run()
    assert any(access_home.mrns[pid] in w.value for w in at.warning)
    at.radio(key="review_outcome").set_value("positive")
    at.text_area(key="review_comment").input("confirmed on follow-up")
    at.form_submit_button[-1].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert confirmed_labels(ReviewStore(access_db(access_home.fixture.home / "access"))) == {pid: 1}
    review = ReviewStore(access_db(access_home.fixture.home / "access")).for_patient(pid)[0]
    assert review.username == "c.clinician" and review.prediction.model_version and review.prediction.run_id
    trail = _audit(access_home)
    mine = [(e["action"], e["patient_id"]) for e in trail if e["user"] == "c.clinician"]
    assert ("sign_in", None) in mine and ("view_patient", pid) in mine
    assert ("reveal_mrn", pid) in mine and ("review", pid) in mine
    assert not any(access_home.mrns[pid] in str(e) for e in trail)  # the trail names the pseudonym only
    at.switch_page("pages/worklist.py").run()
    table = at.dataframe[0].value
    assert table.set_index("patient").loc[pid, "review"] == "positive"


def test_analyst_sees_no_reveal_and_no_review_form(signed_in, access_home: AccessHome) -> None:
    at = signed_in("a.analyst")
    assert not at.exception and at.dataframe
    at.switch_page("pages/patient.py").run()
    assert not at.exception
    assert not [b for b in at.button if b.key == "reveal_mrn"] and not at.form_submit_button
    assert not any(m in _text(at) for m in access_home.mrns.values())
    at.switch_page("pages/model.py").run()
    assert not at.exception and at.title[0].value == "Model"


def test_analyst_batch_trigger_is_audited(signed_in, access_home: AccessHome, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.batch_trigger as bt

    started: list[Path] = []

    def fake_run_batch(cohort_dir, prefect_api_url, progress, home, **kwargs):  # the flow itself is tested elsewhere
        started.append(Path(cohort_dir))
        return bt.BatchOutcome(False, "stopped by the test")

    monkeypatch.setattr(bt, "run_batch", fake_run_batch)
    at = signed_in("a.analyst")
    at.switch_page("pages/batch.py").run()
    at.text_input(key="batch_folder").input(str(tmp_path)).run()
    at.button(key="batch_run").click().run()
    assert started == [tmp_path] and any("stopped by the test" in e.value for e in at.error)
    assert any(e["action"] == "batch_trigger" and e["user"] == "a.analyst" for e in _audit(access_home))


def test_admin_sees_trail_and_nothing_clinical(signed_in, access_home: AccessHome) -> None:
    at = signed_in("d.admin")
    assert not at.exception and at.title[0].value == "Admin"
    assert any("Intact" in s.value for s in at.success)
    users = at.dataframe[0].value
    assert set(users["user"]) == set(PASSWORDS) and "password" not in " ".join(users.columns)
    trail = at.dataframe[1].value
    assert {"sign_in"} <= set(trail["action"])
    at.multiselect(key="audit_action").select("sign_in").run()
    assert set(at.dataframe[1].value["action"]) == {"sign_in"}


def test_pages_refuse_roles_without_permission(signed_in, access_home: AccessHome) -> None:
    from streamlit.testing.v1 import AppTest

    from flows.access.sessions import SessionUser

    at = signed_in("c.clinician")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/admin.py")  # not offered to a clinician
    # A page reached anyway (a typed URL, a stale link) checks the role itself.
    page = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboard" / "pages" / "admin.py"))
    page.session_state["clinfuse_user"] = SessionUser("c.clinician", "clinician", 0.0)
    page.run()
    assert any("may not open the admin page" in e.value for e in page.error) and not page.dataframe
    assert any(e["action"] == "denied" and e["user"] == "c.clinician" for e in _audit(access_home))


def test_wrong_password_is_refused_and_audited(signed_in, access_home: AccessHome) -> None:
    at = signed_in("c.clinician", "not-the-password-1")
    assert any("Wrong user name or password" in e.value for e in at.error) and not at.dataframe
    assert any(e["action"] == "sign_in_failed" and e["user"] == "c.clinician" for e in _audit(access_home))
    assert not any("not-the-password-1" in str(e) for e in _audit(access_home))


def test_idle_session_goes_back_to_sign_in(app_for, access_home: AccessHome) -> None:
    from flows.access.sessions import SessionUser

    at = app_for(access_home.fixture.home)
    at.session_state["clinfuse_user"] = SessionUser("c.clinician", "clinician", 0.0)
    at.session_state["clinfuse_last_seen"] = 1.0  # active long ago
    at.run()
    assert at.title[0].value == "clinfuse — sign in" and not at.dataframe
    assert any("expired" in w.value for w in at.warning)
    assert any(e["action"] == "session_expired" and e["user"] == "c.clinician" for e in _audit(access_home))
    fresh = app_for(access_home.fixture.home)
    fresh.session_state["clinfuse_user"] = SessionUser("c.clinician", "clinician", 0.0)
    fresh.session_state["clinfuse_last_seen"] = __import__("time").time()
    fresh.run()
    assert fresh.title[0].value == "Worklist" and fresh.dataframe
