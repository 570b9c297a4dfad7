// libarchive for DLHubArchive, the one Swift target that uses it.
#include <archive.h>
#include <archive_entry.h>

// The file-type constants are macros with casts, which Swift does not import.
static inline unsigned int dlhub_archive_type_regular(void) { return AE_IFREG; }
static inline unsigned int dlhub_archive_type_directory(void) { return AE_IFDIR; }
static inline unsigned int dlhub_archive_type_symlink(void) { return AE_IFLNK; }
