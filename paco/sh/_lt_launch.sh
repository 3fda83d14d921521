#!/bin/bash
# _launch.sh plus the data flags every ImageNet-LT / iNat / Places-LT script starts with (not run by hand):
#   DATA  image root the list paths are joined to      LISTS  folder with ImageNet_LT/ iNaturalist18/ Places_LT/ lists
#   (default paco/LT/imagenet_inat/data, where the original ships them)
# Usage: _lt_launch.sh ENTRY FLAGS...
set -e
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA=${DATA:-./data}
LISTS=${LISTS:-$HERE/../LT/imagenet_inat/data}  # the original's lists, shipped where it ships them
entry=$1
shift
exec bash "$HERE/_launch.sh" "$entry" --data "$DATA" --list-dir "$LISTS" "$@"
