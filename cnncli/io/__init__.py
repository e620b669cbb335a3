"""Reading and writing arrays: references, readers, case files, the dtype policy, atomic writers.

Knows nothing of terminals or of the layer maths. Modules:

- :mod:`.readers` -- array references (``x.h5:/path``, ``-``), telling formats apart, the memory budget;
- :mod:`.npy`, :mod:`.npz`, :mod:`.hdf5` -- each format's reader (headers first, never unpickling,
  HDF5 kept inside its file);
- :mod:`.arrays` -- a reference loaded whole or opened for streaming;
- :mod:`.cases` -- case files (a layer call in one file);
- :mod:`.dtypes` -- which dtype a layer is computed in;
- :mod:`.text` -- hyperparameters written as text (``3x2``, ``0,1,0,1``, ``off``) read into numbers;
- :mod:`.writers` -- atomic ``-o`` outputs (npy, npz, h5, stdout).
"""
