"""The fault suite (issue #19): each of smartroute's reliability promises run at scale, as figures."""
