"""`make run` prints how to log in, with the generated password, exactly once."""

import io
import re

from django.contrib.auth import get_user_model

from evals.management.commands.serve import Command

LOGIN_LINE = re.compile(r"^Log in at http://127\.0\.0\.1:8000/ as admin with password (\S+)  \(shown only this once\)$")


def admin_output() -> str:
    out = io.StringIO()
    Command(stdout=out, no_color=True).ensure_admin("127.0.0.1:8000")
    return out.getvalue().strip()


def test_it_prints_the_login_url_user_and_password_once(db):
    first = admin_output()
    match = LOGIN_LINE.match(first)
    assert match, first
    assert get_user_model().objects.get(username="admin").check_password(match.group(1))
    second = admin_output()
    assert match.group(1) not in second
    assert second.startswith("Log in at http://127.0.0.1:8000/ as admin (the password was printed on the first run")
