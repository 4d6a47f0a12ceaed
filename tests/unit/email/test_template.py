"""E-mail templates: sandboxed, HTML autoescaped, strict about variables."""

from __future__ import annotations

import pytest

from tasks.email.template import load_template
from tasks.errors import InputError

pytestmark = pytest.mark.timeout(60)


def test_html_body_escapes_values_and_text_body_keeps_them() -> None:
    template = load_template(
        {"subject": "Hi {{ name }}", "html": "<p>{{ name }}</p>", "text": "{{ name }}"}
    )
    rendered = template.render({"name": "<script>x</script>"})
    assert rendered.html == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert rendered.text == "<script>x</script>"
    assert rendered.subject == "Hi <script>x</script>"


@pytest.mark.parametrize(
    "hostile",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ name.__class__.__base__.__subclasses__() }}",
    ],
)
def test_hostile_template_is_refused_by_the_sandbox(hostile: str) -> None:
    template = load_template({"subject": "s", "text": hostile})
    with pytest.raises(InputError, match="template"):
        template.render({"name": "x"})


def test_subject_that_renders_a_line_break_is_refused() -> None:
    template = load_template({"subject": "Hi {{ name }}", "text": "body"})
    with pytest.raises(InputError, match="line break"):
        template.render({"name": "x\r\nBcc: victim@example.com"})


def test_missing_variable_is_an_error_not_a_blank() -> None:
    template = load_template({"subject": "Hi {{ nmae }}", "text": "body"})
    with pytest.raises(InputError, match="nmae"):
        template.render({"name": "Ana"})


def test_syntax_error_names_the_part_and_line() -> None:
    with pytest.raises(InputError, match="inline html line 2"):
        load_template({"subject": "s", "html": "<p>\n{% if %}</p>"})


def test_inline_template_needs_a_body() -> None:
    with pytest.raises(InputError, match="html"):
        load_template({"subject": "s"})


def test_named_template_is_read_from_templates_email() -> None:
    rendered = load_template("welcome").render({"name": "Zoë"})
    assert rendered.subject == "Welcome to batchflows, Zoë"
    assert rendered.text is not None
    assert "Hello Zoë" in rendered.text


@pytest.mark.parametrize("name", ["../report", "nope", "/etc/passwd", "Welcome"])
def test_unknown_or_path_like_template_name_is_refused(name: str) -> None:
    with pytest.raises(InputError, match="parameter 'template'"):
        load_template(name)
