# nbgrader configuration of the course. Run nbgrader commands from this folder.
c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "mnistlab"
c.CourseDirectory.source_directory = "source"  # the masters, with solutions and hidden tests
c.CourseDirectory.release_directory = "notebooks"  # student versions (nbgrader generate_assignment)
c.CourseDirectory.solution_directory = "solutions"  # executed reference solutions (nbgrader generate_solution)

# Training cells take longer than nbgrader's default 30 s per cell.
c.Execute.timeout = 300
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
