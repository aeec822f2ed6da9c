"""torchdev/grammar.py: the one way a URL is shown (without its login), and how a login in a URL is found."""
import pytest

from torchdev.grammar import has_userinfo, without_userinfo


@pytest.mark.parametrize("text, shown", [
    ("https://alice:s3cret@pypi.corp/simple", "https://pypi.corp/simple"),
    ("fetch http://u:p@ss@host:8080/x failed", "fetch http://host:8080/x failed"),  # an unencoded @ in the password
    ("git+ssh://git@github.com/x/y.git and https://h/a@b", "git+ssh://github.com/x/y.git and https://h/a@b"),
    ("no url here: alice@example.org", "no url here: alice@example.org"),
])
def test_every_url_in_a_text_is_shown_without_its_login(text, shown):
    assert without_userinfo(text) == shown


def test_a_login_is_found_in_a_url_however_it_is_written():
    assert has_userinfo("https://a:b@h/") and has_userinfo("https://token@h/") and has_userinfo("https://@h/")
    assert not has_userinfo("https://h/simple/a@b") and not has_userinfo("https://h:8443/simple")
