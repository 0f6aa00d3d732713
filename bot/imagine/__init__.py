"""The imagine path, one room per concern (the Discord bot and the CLI use it through
``ImagineService`` in ``bot.imagine.service``):

- ``admission``: options, prompt rules, the gate, rate limits, the record, the queue; the
  guild's settings read once, the image policy fixed for the job;
- ``gate``: bans, pauses, channels, direct messages; ``rules``: a guild's prompt rules;
- ``following``: a job's events to its terminal state, and cancelling it;
- ``pictures``: dispositions, the grid and the files of a finished job;
- ``controls``: upscale and reroll; ``recovery``: open jobs after a restart, leftover files;
- ``leases``: this process's hold on the jobs it follows;
- ``records``: the audit records; ``types``/``outcomes``: what goes in and comes out;
  ``errors``: its refusals.

A new ``/imagine`` option travels by name through ``records`` (no list to extend there): add it
to ``generation.options`` and to the job's record in ``storage``.
"""
