"""`{% load numbers %}`: the house's number formats (driftboard/formatting.py) as template filters."""

from django import template

from driftboard import formatting

register = template.Library()

register.filter("p_value", formatting.p_value)
register.filter("percent", formatting.percent)
register.filter("percent_points", formatting.percent_points)
register.filter("number", formatting.number)
