"""Moved to ``generation.queue.fair``; kept for the redesign's second round."""

from __future__ import annotations

from generation.queue.fair import FairQueue as FairQueue
from generation.queue.fair import Ticket as Ticket
