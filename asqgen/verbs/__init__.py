"""One module a verb of ``asqgen``, each with ``run(args)`` returning the exit status;
``asqgen.cli`` imports a verb's module only when the verb runs."""
