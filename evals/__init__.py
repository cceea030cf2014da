"""evals: haystack and needle generators, scoring, reports, and LM evals."""
