"""Hand-written revisions; a test checks that head matches ``vodforge.jobs.models``."""
