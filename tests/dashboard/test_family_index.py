"""/families/ lists every family (it was a bare 404), and the navigation marks Families, not Home, on a
family's pages."""

from django.urls import reverse


def current_nav(page: str) -> str:
    nav = page[page.index('<nav class="nav"') : page.index("</nav>")]
    link = nav[: nav.index('aria-current="page"')]
    return link[link.rindex("<a ") :]


def test_it_lists_every_family_with_its_production_version(board, reader_client):
    response = reader_client.get("/families/")

    page = response.content.decode()
    assert response.status_code == 200
    assert f'href="{board.family.get_absolute_url()}"' in page
    assert f'href="{board.production.get_absolute_url()}">v{board.production.version}</a>' in page
    assert f'href="{reverse("family-list")}"' in current_nav(page)


def test_it_marks_families_not_home_on_a_familys_pages(board, reader_client):
    for url in (board.family.get_absolute_url(), reverse("family-compare", args=[board.family.slug])):
        nav = current_nav(reader_client.get(url).content.decode())
        assert f'href="{reverse("family-list")}"' in nav and f'href="{reverse("home")}"' not in nav
