# frozen_string_literal: true

module Iodine
  class << self
    # Deprecated: `Iodine.listen(service: :http, **args, &block)`, after a warning.
    def listen2http(args, &block)
      raise TypeError, "Iodine.listen2http expects a Hash of options" unless args.is_a?(Hash)

      Base.log(3, "Iodine.listen2http is deprecated, use Iodine.listen(service: :http, ...)")
      listen(args.merge(service: :http), &block)
    end
  end
end
