"""The Annotate page through app.py (Streamlit AppTest): the single-user lab judges as its
owner; an annotator signs in and sees only the queue (sides A/B, no labels); an owner sees
agreement and the disagreement queue, adjudicates and writes the consensus."""

from __future__ import annotations

import pytest

from dpo_core.annotation.accounts import LOCAL_OWNER, login
from dpo_core.annotation.judgments import read_judgments
from dpo_core.annotation.tasks import create_task, get_task, task_pair_ids
from dpo_core.data.datasets import get_dataset
from dpo_core.store import open_store
from tests.annotation.helpers import PASSWORD, answer, pairs_dataset, team
from tests.support import open_page

PAGE = "pages/annotate.py"


def texts(at) -> str:
    return " ".join(str(e.value) for e in [*at.text, *at.markdown, *at.caption])


def button(at, start: str):
    return next(b for b in at.button if b.label.startswith(start))


def test_a_single_user_lab_judges_as_its_owner(lab):
    store = open_store()
    pairs_dataset(store, 3)
    create_task(store, LOCAL_OWNER, "t", "prefs", k=1, guidelines="Prefer *kind* replies.")
    at = open_page(PAGE)
    assert [r.label for r in at.radio][:1] == ["Section"]  # the owner's sections
    assert "Prefer *kind* replies." in texts(at) and not at.text_input  # no sign-in
    shown = texts(at)
    assert "chosen" not in shown.lower() and "rejected" not in shown.lower()
    button(at, "A is better").click().run()
    assert not at.exception
    assert len(read_judgments(store, LOCAL_OWNER, "t")) == 1


def test_an_annotator_signs_in_and_sees_only_the_queue(lab):
    store = open_store()
    people = team(store, "ann")
    pairs_dataset(store, 2)
    create_task(store, people["boss"], "t", "prefs", k=1)
    at = open_page(PAGE)
    assert [b.label for b in at.button] == ["Sign in"] and "good 0" not in texts(at)
    at.text_input[0].input("ann")
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    assert "Signed in as **ann** (annotator)" in texts(at)
    assert not at.radio and "Create task" not in [b.label for b in at.button]
    button(at, "Tie").click().run()
    assert [j["label"] for j in read_judgments(store, people["boss"], "t")] == ["tie"]


def test_an_owner_sees_agreement_adjudicates_and_writes_the_consensus(lab):
    store = open_store()
    people = team(store, "ann", "bob")
    pairs_dataset(store, 2)
    create_task(store, people["boss"], "t", "prefs", k=2)
    ids = task_pair_ids(store, get_task(store, "t"))
    for pid in ids:
        answer(store, people["ann"], "t", pid, "chosen")
        answer(store, people["bob"], "t", pid, "rejected" if pid == ids[0] else "chosen")
    at = open_page(PAGE, _annotation_token=login(store, "boss", PASSWORD))
    at.radio[0].set_value("Agreement").run()
    assert not at.exception
    assert [m.label for m in at.metric] == ["Pairs judged by 2+", "Raw agreement",
                                            "Fleiss' kappa", "Krippendorff's alpha"]
    assert at.metric[1].value == "0.500"
    assert "Disagreements to adjudicate (1)" in [s.value for s in at.subheader]
    at.selectbox(key=f"annotate_decide_{ids[0]}").set_value("chosen")
    at.button(key=f"annotate_decide_go_{ids[0]}").click().run()
    assert "Disagreements to adjudicate (0)" in [s.value for s in at.subheader]
    at.text_input(key="annotate_into").input("agreed")
    button(at, "Write the consensus dataset").click().run()
    assert not at.exception and "Wrote agreed: 2 pairs" in at.success[0].value
    assert get_dataset(store, "agreed").recipe["task"] == "t"


def test_a_viewer_sees_agreement_only(lab):
    store = open_store()
    people = team(store, "ann", viewer=True)
    pairs_dataset(store, 2)
    create_task(store, people["boss"], "t", "prefs", k=1)
    at = open_page(PAGE, _annotation_token=login(store, "watcher", PASSWORD))
    assert not at.radio or at.radio[0].label != "Section"
    labels = [b.label for b in at.button]
    assert not any(x.startswith(("A is better", "Decide", "Create task")) for x in labels)
    assert at.metric[0].label == "Pairs judged by 2+"


def test_with_accounts_app_asks_who_first_and_an_annotator_gets_only_annotate(lab):
    from streamlit.testing.v1 import AppTest

    from tests.support import REPO

    store = open_store()
    team(store, "ann")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    assert [b.label for b in at.button] == ["Sign in"] and not at.subheader  # no Home yet
    at.text_input[0].input("ann")
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    assert [t.value for t in at.title] == ["Annotate"]  # the only page it has
    assert "Workspace" not in texts(at)  # the owner's sidebar is not drawn
    with pytest.raises(ValueError, match=r"Known pages: \['[^']*/pages/annotate\.py'\]"):
        at.switch_page("pages/runs.py")  # the navigation has no other page for it


def test_without_accounts_the_app_opens_home_as_before(lab):
    at = open_page("pages/home.py")
    assert at.title[0].value == "DPO Lab" and "Sign in" not in [b.label for b in at.button]


AUTH = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback",
                 "cookie_secret": "a-test-cookie-secret", "client_id": "lab",
                 "client_secret": "s", "server_metadata_url":
                 "http://127.0.0.1:9/.well-known/openid-configuration"}}


def app_with_provider(identity, monkeypatch):
    """app.py with an OIDC provider configured and (faked: no provider is reachable here) the
    identity it signed in; Streamlit checks the provider's token before st.user has it."""
    from streamlit.testing.v1 import AppTest

    import pages._accounts
    from tests.support import REPO

    if identity is not None:
        monkeypatch.setattr(pages._accounts, "provider_identity", lambda: identity)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.secrets.update(AUTH)
    return at


def test_with_oidc_configured_the_sign_in_offers_the_provider(lab, monkeypatch):
    team(open_store(), "ann")
    at = app_with_provider(None, monkeypatch)  # nobody signed in at the provider (st.user)
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in with your organisation", "Sign in"]


def test_the_provider_opens_the_session_of_its_oidc_account_and_no_other(lab, monkeypatch):
    from dpo_core.annotation.accounts import add_account, get_account

    store = open_store()
    team(store, "ann")
    add_account(store, get_account(store, "boss"), "cy@uni.edu", None, "annotator", oidc=True)
    at = app_with_provider(("cy@uni.edu", True), monkeypatch)
    at.run()
    assert not at.exception and [t.value for t in at.title] == ["Annotate"]
    assert "Signed in as **cy@uni.edu** (annotator)" in [c.value for c in at.caption]
    stranger = app_with_provider(("eve@uni.edu", True), monkeypatch)
    stranger.run()
    assert [t.value for t in stranger.title] == ["DPO Lab"]  # still the sign-in
    assert "eve@uni.edu has no account in this lab" in stranger.error[0].value
    assert "Sign out of the provider" in [b.label for b in stranger.button]


def test_an_owner_adds_and_disables_accounts_on_the_people_section(lab):
    from dpo_core.annotation.accounts import get_account

    store = open_store()
    team(store, "ann")
    at = open_page(PAGE, _annotation_token=login(store, "boss", PASSWORD))
    at.radio[0].set_value("People").run()
    assert at.dataframe[0].value["name"].tolist() == ["boss", "ann"]
    at.text_input[0].input("cy@uni.edu")
    at.checkbox[0].check()
    button(at, "Add account").click().run()
    assert not at.exception and "Added cy@uni.edu (annotator)." in at.success[0].value
    assert get_account(store, "cy@uni.edu").oidc
    assert at.dataframe[0].value["name"].tolist() == ["boss", "ann", "cy@uni.edu"]
    at.selectbox(key="annotate_disable_who").set_value("ann")
    at.button(key="annotate_disable").click().run()
    assert get_account(store, "ann").disabled
