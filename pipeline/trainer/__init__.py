"""The trainer: labels joined to streams (``labelling``), a balanced buffer (``buffer``), drift
(``drift``), the promotion gate (``gate``), datasets wired into training (``modelling``) and the
retraining service (``service``)."""
