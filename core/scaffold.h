/* moonwire new NAME: a new app folder from the templates shipped in scripts/templates/app: an
 * app, a page already connected to it, and specs that pass under moonwire test. */
#ifndef MOONWIRE_SCAFFOLD_H
#define MOONWIRE_SCAFFOLD_H

/* argv[0] is "new", argv[1] the folder to create. Refuses a folder that exists. Returns the
 * exit status: 0, 1 when it could not create the app, 2 for a usage error. */
int scaffold_main(int argc, char **argv, const char *scripts_dir);

#endif
