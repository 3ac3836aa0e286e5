"""Action ids, callback ids and block ids shared by the builders (bot/blocks) and the listeners.

Slack wants an action_id unique within its block, so two buttons of one block that do the same kind
of thing carry distinct ids with a common prefix, and the listener matches the prefix.
"""

from __future__ import annotations

import re

# App Home and lists (R10-R17)
HOME_TAB = "home_tab"  # home_tab_assigned, home_tab_unassigned
OPEN_TICKET = "open_ticket"  # open_ticket, or open_ticket-<id> where a block has several
LOAD_MORE = "load_more"
VIEW_PAGE = "view_page"  # view_page_previous, view_page_next

# The card's actions
CLAIM = "claim"
REASSIGN = "reassign"  # take over a ticket another agent has, on purpose
UNASSIGN = "unassign"
REPLY = "reply"
NOTE = "note"
MERGE = "merge"
STATUS = "status"
FIELDS = "fields"  # priority and subject
EVENTS = "events"
EVENTS_PAGE = "events_page"  # events_page_older, events_page_newer

# Inside modals
REPLY_MACRO = "reply_macro"
MERGE_SEARCH = "merge_search"
MERGE_PICK = "merge_pick"

# View callback ids
CB_HOME = "home"
CB_TICKET = "ticket"
CB_VIEW = "view_page"
CB_EVENTS = "events"
CB_REPLY = "reply_submit"
CB_NOTE = "note_submit"
CB_MERGE_SEARCH = "merge_search"
CB_MERGE = "merge_submit"
CB_FIELDS = "fields_submit"

# Input block ids of the reply and note modals (a version suffix forces Slack to redraw a field).
REPLY_TEXT = "text"
REPLY_FILE = "file"
REPLY_STATUS = "status"
REPLY_TEMPLATE = "template"
REPLY_PARAMS = "params"
NOTE_TEXT = "note"
# Input block ids and action ids of the fields modal.
FIELDS_PRIORITY = "priority"
FIELDS_SUBJECT = "subject"
PRIORITY_SELECT = "fields_priority"
SUBJECT_INPUT = "fields_subject"
NO_PRIORITY = "none"  # the option that clears the priority (an option's value cannot be empty)


def prefixed(prefix: str) -> re.Pattern[str]:
    """What a listener matches to take every action_id of this kind."""
    return re.compile(rf"^{re.escape(prefix)}(?:[_-].+)?$")
